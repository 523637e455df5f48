#include "args.hpp"

#include <charconv>
#include <cmath>

namespace assistgen::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_opts,
           const std::set<std::string>& flag_opts,
           const std::map<std::string, std::string>& aliases) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    if (auto it = aliases.find(a); it != aliases.end()) a = it->second;
    if (value_opts.count(a)) {
      if (inline_value) {
        values_[a] = *inline_value;
      } else {
        if (i + 1 >= argv.size()) throw UsageError("option " + a + " needs a value");
        values_[a] = argv[++i];
      }
    } else if (flag_opts.count(a) && !inline_value) {
      flags_.insert(a);
    } else {
      throw UsageError("unknown option or argument '" + argv[i] + "' (see --help)");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) throw UsageError("missing required option " + name);
  return *v;
}

long long Args::get_int(const std::string& name, long long fallback, long long lo,
                        long long hi) const {
  auto v = get(name);
  if (!v) return fallback;
  long long r = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), r);
  if (ec != std::errc() || p != v->data() + v->size())
    throw UsageError("option " + name + " expects an integer, got '" + *v + "'");
  if (r < lo || r > hi)
    throw UsageError("option " + name + " must be in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + *v);
  return r;
}

double Args::get_double(const std::string& name, double fallback, double lo, double hi) const {
  auto v = get(name);
  if (!v) return fallback;
  double r = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), r);
  if (ec != std::errc() || p != v->data() + v->size() || !std::isfinite(r))
    throw UsageError("option " + name + " expects a number, got '" + *v + "'");
  if (r < lo || r > hi)
    throw UsageError("option " + name + " must be in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + *v);
  return r;
}

std::vector<Token> parse_token_list(const std::string& s) {
  std::vector<Token> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    long long v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0 ||
        v > INT32_MAX)
      throw UsageError("--tokens: '" + item + "' is not a token id (expected e.g. 1,2,3)");
    out.push_back(static_cast<Token>(v));
    start = end + 1;
  }
  return out;
}

}  // namespace assistgen::cli

// Value, Object and TemplateError, JSON in (nlohmann-json, order kept) and out
// (the exact text of @huggingface/jinja's toJSON), and the JavaScript-compatible
// text helpers.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "internal.hpp"

namespace assistgen::jinja {

using detail::StringData;

TemplateError::TemplateError(std::string origin, std::size_t line, std::size_t column,
                             std::string message)
    : Error(origin + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message),
      origin_(std::move(origin)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

// ---- Value ---------------------------------------------------------------------

Value::Value(std::string s)
    : kind_(Kind::string), s_(std::make_shared<const StringData>(StringData{std::move(s), {}})) {}
Value::Value(Array a) : kind_(Kind::array), a_(std::make_shared<Array>(std::move(a))) {}
Value::Value(Object o) : kind_(Kind::object), o_(std::make_shared<Object>(std::move(o))) {}

Value Value::user_text(std::string s) {
  const std::size_t n = s.size();
  StringData d{std::move(s), {}};
  if (n > 0) d.user.push_back({0, n});
  return from_string_data(std::make_shared<const StringData>(std::move(d)));
}

Value Value::object() { return Value(Object{}); }
Value Value::array() { return Value(Array{}); }

Value Value::from_string_data(std::shared_ptr<const StringData> s) {
  Value v;
  v.kind_ = Kind::string;
  v.s_ = std::move(s);
  return v;
}
Value Value::from_namespace(std::shared_ptr<detail::NamespaceData> ns) {
  Value v;
  v.kind_ = Kind::ns;
  v.ns_ = std::move(ns);
  return v;
}
Value Value::from_callable(std::shared_ptr<const detail::Callable> fn) {
  Value v;
  v.kind_ = Kind::function;
  v.fn_ = std::move(fn);
  return v;
}

namespace {
const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::undefined:
      return "undefined";
    case Value::Kind::none:
      return "none";
    case Value::Kind::boolean:
      return "boolean";
    case Value::Kind::integer:
      return "integer";
    case Value::Kind::floating:
      return "float";
    case Value::Kind::string:
      return "string";
    case Value::Kind::array:
      return "array";
    case Value::Kind::object:
      return "object";
    case Value::Kind::ns:
      return "namespace";
    case Value::Kind::function:
      return "function";
  }
  return "?";
}
[[noreturn]] void wrong_kind(Value::Kind have, const char* want) {
  throw InvalidArgument(std::string("jinja::Value: expected ") + want + ", have " +
                        kind_name(have));
}
}  // namespace

bool Value::as_bool() const {
  if (kind_ != Kind::boolean) wrong_kind(kind_, "boolean");
  return b_;
}
std::int64_t Value::as_int() const {
  if (kind_ != Kind::integer) wrong_kind(kind_, "integer");
  return i_;
}
double Value::as_double() const {
  if (kind_ == Kind::integer) return static_cast<double>(i_);
  if (kind_ != Kind::floating) wrong_kind(kind_, "number");
  return f_;
}
const std::string& Value::as_string() const {
  if (kind_ != Kind::string) wrong_kind(kind_, "string");
  return s_->text;
}
const Array& Value::as_array() const {
  if (kind_ != Kind::array) wrong_kind(kind_, "array");
  return *a_;
}
const Object& Value::as_object() const {
  if (kind_ != Kind::object) wrong_kind(kind_, "object");
  return *o_;
}
const Value* Value::find(std::string_view key) const {
  return kind_ == Kind::object ? o_->find(key) : nullptr;
}
Value& Value::set(std::string key, Value value) {
  if (kind_ != Kind::object) wrong_kind(kind_, "object");
  if (o_.use_count() > 1) o_ = std::make_shared<Object>(*o_);
  o_->set(std::move(key), std::move(value));
  return *this;
}
Value& Value::push_back(Value value) {
  if (kind_ != Kind::array) wrong_kind(kind_, "array");
  if (a_.use_count() > 1) a_ = std::make_shared<Array>(*a_);
  a_->push_back(std::move(value));
  return *this;
}
const void* Value::identity() const {
  switch (kind_) {
    case Kind::array:
      return a_.get();
    case Kind::object:
      return o_.get();
    case Kind::ns:
      return ns_.get();
    case Kind::function:
      return fn_.get();
    default:
      return nullptr;
  }
}

std::string Value::to_json() const { return detail::to_json(*this, {}); }

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries_)
    if (k == key) return &v;
  return nullptr;
}
void Object::set(std::string key, Value value) {
  for (auto& [k, v] : entries_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  entries_.emplace_back(std::move(key), std::move(value));
}

// ---- JSON in -------------------------------------------------------------------

namespace {
using ordered = nlohmann::ordered_json;

Value from_json(const ordered& j) {
  switch (j.type()) {
    case ordered::value_t::null:
      return Value(nullptr);
    case ordered::value_t::boolean:
      return Value(j.get<bool>());
    case ordered::value_t::number_integer:
      return Value(static_cast<long long>(j.get<std::int64_t>()));
    case ordered::value_t::number_unsigned: {
      auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<long long>(u));
    }
    case ordered::value_t::number_float:
      return Value(j.get<double>());
    case ordered::value_t::string:
      return Value(j.get<std::string>());
    case ordered::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_json(e));
      return Value(std::move(a));
    }
    case ordered::value_t::object: {
      Object o;
      for (auto it = j.begin(); it != j.end(); ++it) o.set(it.key(), from_json(it.value()));
      return Value(std::move(o));
    }
    default:
      return Value(nullptr);
  }
}
}  // namespace

Value Value::parse_json(std::string_view json, std::string_view origin) {
  ordered j;
  try {
    j = ordered::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string(origin) + ": malformed JSON: " + e.what());
  }
  return from_json(j);
}

// ---- JSON out ------------------------------------------------------------------

namespace detail {

namespace {
void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  static const char* hex = "0123456789abcdef";
  auto u_escape = [&](unsigned v) {
    out += "\\u";
    for (int sh = 12; sh >= 0; sh -= 4) out.push_back(hex[(v >> sh) & 0xF]);
  };
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7f))
            u_escape(c);
          else
            out.push_back(static_cast<char>(c));
      }
      continue;
    }
    const std::size_t start = i;
    const char32_t cp = next_cp(s, i);
    if (!ensure_ascii) {
      out.append(s.substr(start, i - start));
    } else if (cp >= 0x10000) {
      const unsigned v = static_cast<unsigned>(cp) - 0x10000;
      u_escape(0xD800 + (v >> 10));
      u_escape(0xDC00 + (v & 0x3FF));
    } else {
      u_escape(static_cast<unsigned>(cp));
    }
  }
  out.push_back('"');
}

// An approximation of String.prototype.localeCompare (ICU root collation) for
// the keys JSON schemas use: punctuation < digits < letters, letters compared
// case-insensitively first, lower case before upper case on a tie.
int collate(std::string_view a, std::string_view b) {
  auto cls = [](unsigned char c) {
    if (std::isdigit(c)) return 1;
    if (std::isalpha(c) || c >= 0x80) return 2;
    return 0;
  };
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    const int cx = cls(x), cy = cls(y);
    if (cx != cy) return cx < cy ? -1 : 1;
    const int lx = std::tolower(x), ly = std::tolower(y);
    if (lx != ly) return lx < ly ? -1 : 1;
  }
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return std::islower(static_cast<unsigned char>(a[i])) ? -1 : 1;
  }
  return 0;
}

void to_json_rec(std::string& out, const Value& v, const JsonOptions& o, int depth,
                 bool undefined_to_null, bool* any_user, std::size_t limit) {
  if (out.size() > limit)
    fail("tojson: the JSON text exceeds the output limit of " + std::to_string(limit) + " bytes");
  if (depth > 512) fail("tojson: value nested too deeply");
  const std::string item_sep = o.separators ? o.separators->first : (o.indent ? "," : ", ");
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  switch (v.kind()) {
    case Value::Kind::none:
      out += "null";
      return;
    case Value::Kind::undefined:
      out += undefined_to_null ? "null" : "undefined";
      return;
    case Value::Kind::boolean:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::integer:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::floating: {
      const double d = v.as_double();
      out += std::isfinite(d) ? js_number(d) : "null";
      return;
    }
    case Value::Kind::string:
      if (any_user && !v.string_data()->user.empty()) *any_user = true;
      json_string(out, v.as_string(), o.ensure_ascii);
      return;
    case Value::Kind::array:
    case Value::Kind::object:
    case Value::Kind::ns: {
      // @huggingface/jinja has no JSON for tuples (printing one is an error there too).
      if (v.is_tuple()) fail("Cannot convert to JSON: TupleValue");
      const std::string indent =
          o.indent ? std::string(static_cast<std::size_t>(*o.indent), ' ') : "";
      std::string base = "\n";
      for (int d = 0; d < depth; ++d) base += indent;
      const std::string child = base + indent;
      const bool pretty = o.indent && *o.indent != 0;
      if (v.kind() == Value::Kind::array) {
        const Array& arr = v.as_array();
        out.push_back('[');
        for (std::size_t i = 0; i < arr.size(); ++i) {
          if (i > 0) out += item_sep;
          if (pretty) out += child;
          to_json_rec(out, arr[i], o, depth + 1, undefined_to_null, any_user, limit);
        }
        if (pretty && !arr.empty()) out += base;
        out.push_back(']');
        return;
      }
      const Object& obj =
          v.kind() == Value::Kind::object ? v.as_object() : v.namespace_data()->members;
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : obj.entries()) entries.push_back(&e);
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* x, auto* y) { return collate(x->first, y->first) < 0; });
      out.push_back('{');
      for (std::size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += item_sep;
        if (pretty) out += child;
        json_string(out, entries[i]->first, o.ensure_ascii);
        out += key_sep;
        to_json_rec(out, entries[i]->second, o, depth + 1, undefined_to_null, any_user, limit);
      }
      if (pretty && !entries.empty()) out += base;
      out.push_back('}');
      return;
    }
    case Value::Kind::function:
      fail("Cannot convert to JSON: a function");
  }
}
}  // namespace

std::string to_json(const Value& v, const JsonOptions& o, bool undefined_to_null, bool* any_user,
                    std::size_t limit) {
  std::string out;
  to_json_rec(out, v, o, 0, undefined_to_null, any_user, limit);
  if (out.size() > limit)
    fail("tojson: the JSON text exceeds the output limit of " + std::to_string(limit) + " bytes");
  return out;
}

// ---- text helpers --------------------------------------------------------------

bool is_js_space(char32_t c) {
  if (c <= 32) return c == 32 || (c >= 9 && c <= 13);
  return c > 127 && (c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
                     c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff);
}

char32_t next_cp(std::string_view s, std::size_t& i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  const int n = c >= 0xF8 ? -1 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
  if (n < 0 || i + static_cast<std::size_t>(n) >= s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = c & (0x3F >> n);
  for (int k = 1; k <= n; ++k) {
    const unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += static_cast<std::size_t>(n) + 1;
  return cp;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string js_number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return "0";
  std::string out;
  if (d < 0) {
    out.push_back('-');
    d = -d;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string sci(buf, r.ptr);
  const std::size_t e = sci.find('e');
  std::string digits;
  for (std::size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.digits * 10^n
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<std::size_t>(n));
    out.push_back('.');
    out += digits.substr(static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out += digits.substr(1);
    }
    out.push_back('e');
    out.push_back(n - 1 >= 0 ? '+' : '-');
    out += std::to_string(std::abs(n - 1));
  }
  return out;
}

std::string float_to_string(double d) {
  if (d == 0 && std::signbit(d)) return "-0.0";
  if (std::isfinite(d) && std::floor(d) == d) {
    // JavaScript's toFixed(1): plain digits up to 1e21, else the exponent form.
    if (std::fabs(d) < 1e21) {
      char buf[400];
      std::snprintf(buf, sizeof buf, "%.1f", d);
      return buf;
    }
    return js_number(d);
  }
  return js_number(d);
}

}  // namespace detail
}  // namespace assistgen::jinja

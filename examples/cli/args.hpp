// A small command-line option reader for the assistgen CLI: `--name value`,
// `-n value`, `--name=value` and flags. Unknown options and missing values
// are UsageErrors naming the option.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/types.hpp"

namespace assistgen::cli {

class UsageError : public Error {
 public:
  using Error::Error;
};

class Args {
 public:
  /// `value_opts`: options that take a value; `flag_opts`: options that do not.
  /// Short aliases map to long names via `aliases` (e.g. {"-m", "--model"}).
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_opts,
       const std::set<std::string>& flag_opts, const std::map<std::string, std::string>& aliases);

  bool has(const std::string& name) const { return values_.count(name) || flags_.count(name); }
  std::optional<std::string> get(const std::string& name) const;
  std::string require(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback, long long lo, long long hi) const;
  double get_double(const std::string& name, double fallback, double lo, double hi) const;
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

/// Parses "1,2,3" into token ids; errors name the offending item.
std::vector<Token> parse_token_list(const std::string& s);

}  // namespace assistgen::cli

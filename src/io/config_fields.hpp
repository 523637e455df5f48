// Internal to the core library: typed access to the fields of one
// config.json, with errors that name the file and the field. The family
// parsers of the architecture registry (src/io/arch_*.cpp) read through it.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/model_config.hpp"
#include "assistgen/error.hpp"
#include "strict_json.hpp"

namespace assistgen::detail {

class ConfigFields {
 public:
  using json = nlohmann::json;

  ConfigFields(const json& root, const std::string& source) : root_(root), source_(source) {}

  const std::string& source() const { return source_; }

  [[noreturn]] void fail(std::string_view field, const std::string& what) const {
    throw ConfigError(source_ + ": field '" + std::string(field) + "' " + what);
  }

  /// Whether the key is present at all (even with a null value).
  bool contains(std::string_view field) const { return root_.contains(field); }

  /// The field's value, or nullptr when it is absent or null (HF treats
  /// both as "use the default").
  const json* get(std::string_view field) const {
    const auto it = root_.find(field);
    if (it == root_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::uint64_t to_uint(std::string_view field, const json& j) const {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer()) fail(field, "must be non-negative, got " + io::detail::json_excerpt(j));
    fail(field, "must be a non-negative integer, got " + io::detail::json_type_name(j) + " " + io::detail::json_excerpt(j));
  }

  std::size_t size(std::string_view field) const {
    const json* j = get(field);
    if (j == nullptr) fail(field, "is missing");
    return checked_size(field, to_uint(field, *j));
  }

  std::size_t size_or(std::string_view field, std::size_t fallback) const {
    const json* j = get(field);
    return j == nullptr ? fallback : checked_size(field, to_uint(field, *j));
  }

  double number(std::string_view field, const json& j) const {
    if (!j.is_number()) fail(field, "must be a number, got " + io::detail::json_type_name(j) + " " + io::detail::json_excerpt(j));
    return j.get<double>();
  }

  double number_or(std::string_view field, double fallback) const {
    const json* j = get(field);
    return j == nullptr ? fallback : number(field, *j);
  }

  /// A norm epsilon: a number in (0, 1), or `fallback` when absent.
  double epsilon_or(std::string_view field, double fallback) const {
    const double v = number_or(field, fallback);
    if (!(v > 0.0 && v < 1.0)) fail(field, "must be > 0 and < 1, got " + std::to_string(v));
    return v;
  }

  bool boolean_or(std::string_view field, bool fallback) const {
    const json* j = get(field);
    if (j == nullptr) return fallback;
    if (!j->is_boolean()) fail(field, "must be true or false, got " + io::detail::json_type_name(*j));
    return j->get<bool>();
  }

  const std::string* string(std::string_view field) const {
    const json* j = get(field);
    if (j == nullptr) return nullptr;
    if (!j->is_string()) fail(field, "must be a string, got " + io::detail::json_type_name(*j));
    return j->get_ptr<const std::string*>();
  }

  /// An int, a list of ints, or null/absent (no ids).
  std::vector<Token> token_ids(std::string_view field) const;

 private:
  std::size_t checked_size(std::string_view field, std::uint64_t v) const {
    if (v > std::numeric_limits<std::size_t>::max()) fail(field, "is too large");
    return static_cast<std::size_t>(v);
  }

  const json& root_;
  const std::string& source_;
};

/// HF `rope_scaling` (null/absent: none). UnsupportedError for an unknown type.
RopeScaling parse_rope_scaling(const ConfigFields& fields);

/// Reads the activation name in `field` (absent: `fallback`) into
/// c.hidden_act and c.activation; UnsupportedError for names not modelled.
void parse_activation(const ConfigFields& fields, std::string_view field, std::string_view fallback,
                      ModelConfig& c);

}  // namespace assistgen::detail

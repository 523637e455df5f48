// Internal: JSON parsing that rejects duplicate object keys. nlohmann::json
// keeps the last of two equal keys silently, which would let a safetensors
// header or an index name one tensor twice without anyone noticing.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace assistgen::io::detail {

/// Parses `text` as JSON. Syntax errors and duplicate keys throw `E` with a
/// message that starts with `source`. Comments are not allowed.
template <class E>
nlohmann::json parse_strict_json(std::string_view text, const std::string& source) {
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> stack;
  // Where the offending key sits, e.g. "'weight'" for a key inside the
  // object stored under "weight"; empty at the top level.
  auto where = [&stack]() {
    std::string path;
    for (std::size_t i = 0; i + 1 < stack.size(); ++i) {
      if (!path.empty()) path += '.';
      path += stack[i].last_key;
    }
    return path;
  };
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                      nlohmann::json& parsed) -> bool {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
        stack.emplace_back();
        break;
      case Event::object_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case Event::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        Frame& top = stack.back();
        if (!top.keys.insert(key).second) {
          const std::string path = where();
          throw E(source + ": duplicate key '" + key + "'" +
                  (path.empty() ? std::string(" at the top level") : " in '" + path + "'"));
        }
        top.last_key = key;
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    throw E(source + ": invalid JSON: " + e.what());
  }
}

/// Human-readable JSON type of `j` for error messages.
inline std::string json_type_name(const nlohmann::json& j) {
  if (j.is_number_float()) return "a floating-point number";
  if (j.is_number_unsigned()) return "a non-negative integer";
  if (j.is_number_integer()) return "a negative integer";
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::object:
      return "an object";
    default:
      return "an unexpected JSON value";
  }
}

}  // namespace assistgen::io::detail

// Internal: the one JSON parser of the library (config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, safetensors
// headers, shard indexes). It rejects duplicate object keys (nlohmann::json
// keeps the last of two equal keys silently, which would let a safetensors
// header or an index name one tensor twice without anyone noticing) and
// nesting deeper than kMaxJsonDepth, so no value it returns can make a
// recursive walk (dump(), a loader of nested components) overflow the stack.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace assistgen::io::detail {

/// Objects and arrays nested deeper than this are rejected while parsing.
/// The deepest real files (tokenizer.json) nest about 8 levels.
inline constexpr int kMaxJsonDepth = 64;
/// At most this many values (numbers, strings, objects, arrays ...) in one
/// document: a 256k-token tokenizer.json has about 1.5 million; the bound
/// keeps the parsed tree of a hostile file (every value 16 bytes or more)
/// far below a gigabyte, whatever the byte limit of its file.
inline constexpr std::size_t kMaxJsonValues = std::size_t{1} << 22;

/// Parses `text` as JSON. Syntax errors, duplicate keys and nesting deeper
/// than kMaxJsonDepth throw `E` with a message that starts with `source`.
/// Comments are not allowed.
template <class E>
nlohmann::json parse_strict_json(std::string_view text, const std::string& source) {
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> stack;
  int depth = 0;  // objects and arrays open at this point
  std::size_t values = 0;
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
    if ((event == Event::value || event == Event::object_start || event == Event::array_start) &&
        ++values > kMaxJsonValues) {
      throw E(source + ": more than " + std::to_string(kMaxJsonValues) + " JSON values");
    }
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (++depth > kMaxJsonDepth) {
          const std::string path = where();
          throw E(source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                  " levels" + (path.empty() ? std::string() : " in '" + path + "'"));
        }
        if (event == Event::object_start) stack.emplace_back();
        break;
      case Event::object_end:
        --depth;
        if (!stack.empty()) stack.pop_back();
        break;
      case Event::array_end:
        --depth;
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

/// `j` as JSON text for an error message, cut to at most `max_chars`
/// characters (a huge array in a field must not make a huge message).
inline std::string json_excerpt(const nlohmann::json& j, std::size_t max_chars = 80) {
  std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > max_chars) {
    std::size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    text += "...";
  }
  return text;
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

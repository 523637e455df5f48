// Exceptions thrown by assistgen. Every failure the library reports is an
// assistgen::Error (or a subclass), and its message names the file, tensor,
// option or token at fault so a user can act on it without a debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace assistgen {

namespace detail {
/// `text` with every control character (bytes 0x00-0x1F and 0x7F) written as
/// an escape (\n, \t, \r, \xHH), so that a name taken from a hostile file
/// (a tensor name with a newline or ANSI escapes) cannot forge output lines
/// or terminal commands when a message is printed. Other bytes are kept.
inline std::string escape_control(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7F) {
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}
}  // namespace detail

/// Base of every exception the library throws on purpose. The message is
/// kept on one line: control characters in it are escaped
/// (detail::escape_control), whatever file or prompt they came from.
class Error : public std::runtime_error {
 public:
  /// An error whose what() is `what` (control characters escaped); say which
  /// file, tensor, option or token is at fault.
  explicit Error(const std::string& what) : std::runtime_error(detail::escape_control(what)) {}
};

/// A file (safetensors, JSON, tokenizer) is malformed or inconsistent.
class FormatError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// A model configuration value is missing, out of range or inconsistent.
class ConfigError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// A component or value the library does not support (yet).
class UnsupportedError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// A caller passed a bad argument: token id out of range, bad option value.
class InvalidArgument : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// A cache or memory bound would be exceeded; the object is left unchanged.
class CapacityError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// Draft and target models cannot be paired (vocabulary, special tokens).
class CompatibilityError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

/// An I/O operation failed (file missing, unreadable, mmap failed).
class IoError : public Error {
 public:
  using Error::Error;  ///< Constructs from the message, as Error does.
};

}  // namespace assistgen

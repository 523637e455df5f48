// Exceptions thrown by assistgen. Every failure the library reports is an
// assistgen::Error (or a subclass), and its message names the file, tensor,
// option or token at fault so a user can act on it without a debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace assistgen {

/// Base of every exception the library throws on purpose.
class Error : public std::runtime_error {
 public:
  /// An error whose what() is `what`; say which file, tensor, option or token is at fault.
  explicit Error(const std::string& what) : std::runtime_error(what) {}
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

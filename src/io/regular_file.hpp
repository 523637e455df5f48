// Opening a file that must be a regular file, shared by the bounded reader of
// the small JSON files (json_file.cpp) and the mapping of weight files
// (file_mapping.hpp): the open does not block (a FIFO with no writer is
// refused, not waited on), the descriptor is closed on every path out, and
// anything else than a regular file (a directory, a FIFO, a device, a
// socket) is an IoError that names the file and what it is.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "assistgen/error.hpp"

namespace assistgen::io::detail {

/// What a file of mode `mode` is, for error messages ("a directory", ...).
inline std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/// An open, read-only descriptor of a regular file and its stat.
class RegularFile {
 public:
  /// Opens `path`; `expected` says what it should be in the error for
  /// something else ("a safetensors file", "a regular file").
  RegularFile(const std::filesystem::path& path, std::string_view expected) : name_(path.string()) {
    fd_ = ::open(name_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd_ < 0) {
      const int err = errno;
      if (err == ENOENT) throw IoError(name_ + ": no such file");
      throw IoError(name_ + ": cannot open: " + std::strerror(err));
    }
    if (::fstat(fd_, &st_) != 0) {
      const int err = errno;
      ::close(fd_);
      throw IoError(name_ + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st_.st_mode)) {
      ::close(fd_);
      throw IoError(name_ + ": is " + file_kind(st_.st_mode) + ", expected " + std::string(expected));
    }
  }
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile() { ::close(fd_); }

  int fd() const { return fd_; }
  /// The size fstat gave when the file was opened.
  off_t size() const { return st_.st_size; }
  /// The path as given, for messages.
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int fd_ = -1;
  struct stat st_ {};
};

}  // namespace assistgen::io::detail

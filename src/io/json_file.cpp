// Bounded reads of the small files of a model directory (json_file.hpp).
#include "json_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "assistgen/error.hpp"
#include "regular_file.hpp"

namespace assistgen::io::detail {

bool path_exists(const std::filesystem::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_bounded_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const RegularFile file(path, "a regular file");
  const std::string& name = file.name();
  const int fd = file.fd();
  const off_t file_size = file.size();
  auto too_large = [&](const std::string& size) {
    return FormatError(name + ": file is " + size + " bytes, above the limit of " +
                       std::to_string(max_bytes) + " bytes for this file");
  };
  if (file_size < 0 || static_cast<std::uintmax_t>(file_size) > max_bytes) {
    throw too_large(std::to_string(file_size));
  }
  // Read at most one byte past the limit: a file that grows while it is read
  // (or lies about its size, as some /proc files do) is still bounded.
  std::string out;
  out.resize(static_cast<std::size_t>(file_size) + 1);
  std::size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      if (out.size() > max_bytes) throw too_large("more than " + std::to_string(max_bytes));
      out.resize(std::min(max_bytes + 1, out.size() * 2 + 4096));
    }
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      throw IoError(name + ": read failed: " + std::strerror(err));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_bytes) throw too_large("more than " + std::to_string(max_bytes));
  out.resize(got);
  return out;
}

}  // namespace assistgen::io::detail

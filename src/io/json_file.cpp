// Bounded reads of the small files of a model directory (json_file.hpp).
#include "json_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "assistgen/error.hpp"

namespace assistgen::io::detail {

namespace {

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

bool path_exists(const std::filesystem::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_bounded_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw IoError(name + ": no such file");
    throw IoError(name + ": cannot open: " + std::strerror(err));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    throw IoError(name + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    throw IoError(name + ": is " + kind_of(st.st_mode) + ", expected a regular file");
  }
  auto too_large = [&](const std::string& size) {
    return FormatError(name + ": file is " + size + " bytes, above the limit of " +
                       std::to_string(max_bytes) + " bytes for this file");
  };
  if (st.st_size < 0 || static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    throw too_large(std::to_string(st.st_size));
  }
  // Read at most one byte past the limit: a file that grows while it is read
  // (or lies about its size, as some /proc files do) is still bounded.
  std::string out;
  out.resize(static_cast<std::size_t>(st.st_size) + 1);
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

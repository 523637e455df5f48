// Shared helpers of the fuzz targets. A target's parsing step may throw only
// assistgen::Error for bad input; every step after a successful parse must not
// throw at all (FUZZ_NOTHROW). Anything else (another exception type, a broken invariant
// checked with FUZZ_CHECK, a sanitizer report) is a finding. FUZZ_CHECK aborts
// so that both libFuzzer and the plain replay driver report it as a crash.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, msg)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s (%s)\n", __FILE__,      \
                   __LINE__, #cond, msg);                                            \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

/// Runs `expr`, which must not throw: any exception (an assistgen::Error
/// included) is a finding and aborts with its message. For every step after
/// the parser, whose only allowed failure is the documented exception.
#define FUZZ_NOTHROW(expr, msg)                                                      \
  do {                                                                               \
    try {                                                                            \
      expr;                                                                          \
    } catch (const std::exception& fuzz_e_) {                                        \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s threw: %s (%s)\n",      \
                   __FILE__, __LINE__, #expr, fuzz_e_.what(), msg);                  \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace fuzz {

/// An in-memory file (memfd) holding the current input, so that a reader's
/// real open/fstat/mmap path runs with no disk I/O. One per target, reused.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(static_cast<int>(::memfd_create(name, MFD_CLOEXEC))) {
    FUZZ_CHECK(fd_ >= 0, "memfd_create failed");
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  /// Replaces the file's contents with `data`.
  void write(const std::uint8_t* data, std::size_t size) {
    FUZZ_CHECK(::ftruncate(fd_, 0) == 0, "ftruncate failed");
    FUZZ_CHECK(::lseek(fd_, 0, SEEK_SET) == 0, "lseek failed");
    while (size > 0) {
      const ssize_t n = ::write(fd_, data, size);
      FUZZ_CHECK(n > 0, "write failed");
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

/// True when `s` is well-formed UTF-8 (no overlongs, surrogates or values past
/// U+10FFFF), as the library promises for every decoded string.
inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned char c = byte(i);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

}  // namespace fuzz

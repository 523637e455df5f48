// One read-only memory mapping of a whole file, shared by the weight readers
// (safetensors.cpp, gguf.cpp). Refuses what is not a regular file (a FIFO is
// refused, not waited on) and names the file in every error.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "assistgen/error.hpp"

namespace assistgen::io::detail {

class FileMapping {
 public:
  FileMapping() = default;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }

  /// Maps `path`; `expected` names the format in errors ("a safetensors file").
  /// An empty file maps to no bytes (size() == 0, data() == nullptr).
  void map(const std::filesystem::path& path, std::string_view expected) {
    const std::string name = path.string();
    // O_NONBLOCK: a FIFO is refused below instead of waited on.
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      const int err = errno;
      throw IoError(name + ": cannot open: " + std::strerror(err));
    }
    // The mapping outlives the descriptor, so close it on every path out.
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
      throw IoError(name + ": is " + (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file") +
                    ", expected " + std::string(expected));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) return;  // mmap of 0 bytes fails; callers reject short files themselves
    void* base = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      const int err = errno;
      size_ = 0;
      throw IoError(name + ": mmap failed: " + std::strerror(err));
    }
    base_ = base;
  }

  const std::byte* data() const { return static_cast<const std::byte*>(base_); }
  std::size_t size() const { return size_; }

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace assistgen::io::detail

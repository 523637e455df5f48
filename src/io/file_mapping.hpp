// One read-only memory mapping of a whole file, shared by the weight readers
// (safetensors.cpp, gguf.cpp). Refuses what is not a regular file (a FIFO is
// refused, not waited on: regular_file.hpp) and names the file in every error.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "assistgen/error.hpp"
#include "regular_file.hpp"

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
    // The mapping outlives the descriptor, which the RegularFile closes.
    const RegularFile file(path, expected);
    const std::string& name = file.name();
    size_ = static_cast<std::size_t>(file.size());
    if (size_ == 0) return;  // mmap of 0 bytes fails; callers reject short files themselves
    void* base = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
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

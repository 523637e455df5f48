// Fuzz target: io::SafetensorsFile on arbitrary bytes. The file goes through a
// memfd so the reader's real open/fstat/mmap path runs, with no disk I/O.
// Invariants on success: the tensors tile the data section (their byte counts
// add up to the file size minus the header), every view has exactly
// numel * dtype_size bytes, and each byte of every view can be read.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "fuzz_common.hpp"

namespace {

struct MemFile {
  int fd = -1;
  MemFile() : fd(static_cast<int>(::memfd_create("fuzz.safetensors", MFD_CLOEXEC))) {
    FUZZ_CHECK(fd >= 0, "memfd_create failed");
  }
  ~MemFile() { ::close(fd); }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd); }
};

void write_all(int fd, const std::uint8_t* data, std::size_t size) {
  FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate failed");
  FUZZ_CHECK(::lseek(fd, 0, SEEK_SET) == 0, "lseek failed");
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    FUZZ_CHECK(n > 0, "write failed");
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static MemFile file;
  write_all(file.fd, data, size);
  try {
    const assistgen::io::SafetensorsFile st(file.path());
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
    std::uint64_t total = 0;
    unsigned checksum = 0;
    for (const auto& name : st.names()) {
      const auto& t = st.tensor(name);
      FUZZ_CHECK(t.name == name, "view name differs from its key");
      FUZZ_CHECK(t.data.size() == t.numel() * assistgen::dtype_size(t.dtype),
                 "view size is not numel * dtype_size");
      total += t.data.size();
      for (const std::byte b : t.data) checksum += static_cast<unsigned>(b);
      if (t.dtype == assistgen::DType::f32 || t.dtype == assistgen::DType::f16 ||
          t.dtype == assistgen::DType::bf16) {
        const auto values = t.to_float();
        FUZZ_CHECK(values.size() == t.numel(), "to_float size");
      } else {
        try {
          (void)t.to_float();
          FUZZ_CHECK(false, "to_float accepted an integer dtype");
        } catch (const assistgen::FormatError&) {
        }
      }
    }
    FUZZ_CHECK(total == size - 8 - header_len, "tensors do not tile the data section");
    (void)st.metadata().size();
    static volatile unsigned sink;
    sink = checksum;
  } catch (const assistgen::Error&) {
    // The documented outcome for bad input.
  }
  return 0;
}

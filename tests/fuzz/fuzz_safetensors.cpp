// Fuzz target: io::SafetensorsFile on arbitrary bytes. The file goes through a
// memfd so the reader's real open/fstat/mmap path runs, with no disk I/O.
// Invariants on success: the tensors tile the data section (their byte counts
// add up to the file size minus the header), every view has exactly
// numel * dtype_size bytes, and each byte of every view can be read.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fuzz::MemFile file("fuzz.safetensors");
  file.write(data, size);
  // Only opening (parsing the header) may fail, with an assistgen::Error;
  // every check after a successful open aborts on violation, a throw included.
  std::optional<assistgen::io::SafetensorsFile> opened;
  try {
    opened.emplace(file.path());
  } catch (const assistgen::Error&) {
    return 0;  // the documented outcome for bad input
  }
  const assistgen::io::SafetensorsFile& st = *opened;
  FUZZ_CHECK(size >= 8, "a file shorter than its header length opened");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  std::uint64_t total = 0;
  unsigned checksum = 0;
  std::vector<std::string> names;
  FUZZ_NOTHROW(names = st.names(), "names() threw");
  for (const auto& name : names) {
    const assistgen::io::TensorView* view = nullptr;
    FUZZ_NOTHROW(view = &st.tensor(name), "tensor() threw for a listed name");
    const auto& t = *view;
    FUZZ_CHECK(t.name == name, "view name differs from its key");
    FUZZ_CHECK(t.data.size() == t.numel() * assistgen::dtype_size(t.dtype),
               "view size is not numel * dtype_size");
    total += t.data.size();
    for (const std::byte b : t.data) checksum += static_cast<unsigned>(b);
    if (t.dtype == assistgen::DType::f32 || t.dtype == assistgen::DType::f16 ||
        t.dtype == assistgen::DType::bf16) {
      std::vector<float> values;
      FUZZ_NOTHROW(values = t.to_float(), "to_float threw for a float dtype");
      FUZZ_CHECK(values.size() == t.numel(), "to_float size");
    } else {
      bool rejected = false;
      try {
        (void)t.to_float();
      } catch (const assistgen::FormatError&) {
        rejected = true;  // the documented outcome for an integer dtype
      }
      FUZZ_CHECK(rejected, "to_float accepted an integer dtype");
    }
  }
  FUZZ_CHECK(total == size - 8 - header_len, "tensors do not tile the data section");
  FUZZ_NOTHROW((void)st.metadata().size(), "metadata() threw");
  static volatile unsigned sink;
  sink = checksum;
  return 0;
}

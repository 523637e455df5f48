// Fuzz target: io::GgufFile on arbitrary bytes, through a memfd so the
// reader's real open/fstat/mmap path runs. Invariants on success: every
// tensor's bytes lie inside the file, after the header, at data_offset +
// offset, aligned, in file order without overlap; every byte of every view
// and every metadata value can be read; the typed getters throw only
// FormatError (a type mismatch), never anything else.
#include <optional>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/io/gguf.hpp"
#include "fuzz_common.hpp"

namespace {

// A getter may fail only with FormatError (the value has another type).
template <class F>
void getter(F&& f) {
  try {
    f();
  } catch (const assistgen::FormatError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "getter threw a non-FormatError: %s\n", e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fuzz::MemFile file("fuzz.gguf");
  file.write(data, size);
  std::optional<assistgen::io::GgufFile> opened;
  try {
    opened.emplace(file.path());
  } catch (const assistgen::Error&) {
    return 0;  // the documented outcome for bad input
  }
  const assistgen::io::GgufFile& g = *opened;
  unsigned checksum = 0;
  std::vector<std::string> keys;
  FUZZ_NOTHROW(keys = g.keys(), "keys() threw");
  for (const auto& key : keys) {
    const assistgen::io::GgufValue* v = nullptr;
    FUZZ_NOTHROW(v = &g.value(key), "value() threw for a listed key");
    for (const std::byte b : v->bytes) checksum += static_cast<unsigned>(b);
    getter([&] { (void)g.get_uint(key); });
    getter([&] { (void)g.get_int(key); });
    getter([&] { (void)g.get_float(key); });
    getter([&] { (void)g.get_bool(key); });
    getter([&] { (void)g.get_string(key); });
    getter([&] { (void)g.get_string_array(key); });
    getter([&] { (void)g.get_int_array(key); });
    getter([&] { (void)g.get_float_array(key); });
  }
  const std::uint64_t align = g.alignment();
  FUZZ_CHECK(align != 0 && (align & (align - 1)) == 0, "alignment not a power of two");
  FUZZ_CHECK(g.data_offset() % align == 0, "data section not aligned");
  std::uint64_t previous_end = 0;
  for (const auto& t : g.tensors()) {
    FUZZ_CHECK(g.find_tensor(t.name) == &t, "find_tensor disagrees with tensors()");
    FUZZ_CHECK(t.offset % align == 0, "tensor offset not aligned");
    FUZZ_CHECK(t.offset >= previous_end, "tensors overlap or are out of order");
    FUZZ_CHECK(t.ne.size() <= 4 && t.shape.size() == t.ne.size(), "dimensions");
    const auto begin = g.data_offset() + t.offset;
    FUZZ_CHECK(begin + t.data.size() <= size, "tensor data past the end of the file");
    FUZZ_CHECK(t.data.empty() || reinterpret_cast<const std::uint8_t*>(t.data.data()) != nullptr,
               "null view");
    previous_end = t.offset + t.data.size();
    for (const std::byte b : t.data) checksum += static_cast<unsigned>(b);
  }
  static volatile unsigned sink;
  sink = checksum;
  return 0;
}

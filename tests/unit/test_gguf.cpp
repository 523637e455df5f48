// io::GgufFile: valid files (v2, v3, alignments, every value type, nested
// arrays) read back exactly, and one test per class of llama.cpp's GGUF
// advisories (Databricks 2024 / ggml PR 709, CVE-2025-53630 / PR 14595, the
// 2^42-dimension overflow of PR 18674, PR 19856's string and array limits,
// the general.alignment GGML_PAD wrap), each a crafted file that must end in
// a FormatError or UnsupportedError naming the file and the key or tensor.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/io/gguf.hpp"
#include "assistgen/io/safetensors.hpp"

namespace fs = std::filesystem;
using assistgen::FormatError;
using assistgen::UnsupportedError;
using assistgen::io::GgmlType;
using assistgen::io::GgufFile;
using assistgen::io::GgufType;

namespace {

// Little-endian byte builder for GGUF files.
struct Bytes {
  std::string b;
  template <class T>
  Bytes& put(T v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    b.append(raw, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<std::uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& raw(const std::string& s) {
    b += s;
    return *this;
  }
  Bytes& pad(std::size_t a) {
    b.append((a - b.size() % a) % a, '\0');
    return *this;
  }
};

Bytes header(std::uint64_t tensors, std::uint64_t kvs, std::uint32_t version = 3) {
  Bytes h;
  h.raw("GGUF").put<std::uint32_t>(version).put<std::uint64_t>(tensors).put<std::uint64_t>(kvs);
  return h;
}

// A tensor info: name, dims (ne, innermost first), type, offset.
void tensor_info(Bytes& h, const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type,
                 std::uint64_t offset) {
  h.str(name).put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()));
  for (auto d : ne) h.put<std::uint64_t>(d);
  h.put<std::uint32_t>(type).put<std::uint64_t>(offset);
}

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& bytes) {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("assistgen_test_gguf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".gguf");
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { fs::remove(path); }
};

// The message of what opening `bytes` throws as E; fails when it opens.
template <class E>
std::string open_error(const std::string& bytes) {
  TempFile f(bytes);
  try {
    GgufFile g(f.path);
  } catch (const E& e) {
    const std::string what = e.what();
    CHECK(what.find(f.path.string()) != std::string::npos);  // names the file
    return what;
  }
  FAIL("the file opened, or threw another exception type");
  return {};
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("gguf: a valid v3 file reads back every value type and tensor exactly") {
  Bytes h = header(3, 9);
  h.str("general.architecture").put<std::uint32_t>(8).str("llama");
  h.str("u8").put<std::uint32_t>(0).put<std::uint8_t>(200);
  h.str("i32").put<std::uint32_t>(5).put<std::int32_t>(-7);
  h.str("u64").put<std::uint32_t>(10).put<std::uint64_t>(1ull << 40);
  h.str("f32").put<std::uint32_t>(6).put<float>(0.25f);
  h.str("f64").put<std::uint32_t>(12).put<double>(-1.5);
  h.str("flag").put<std::uint32_t>(7).put<std::uint8_t>(1);
  h.str("tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(3).str("a").str("").str("<s>");
  // An array of arrays of INT16.
  h.str("nested").put<std::uint32_t>(9).put<std::uint32_t>(9).put<std::uint64_t>(2);
  h.put<std::uint32_t>(3).put<std::uint64_t>(2).put<std::int16_t>(-1).put<std::int16_t>(2);
  h.put<std::uint32_t>(3).put<std::uint64_t>(0);
  tensor_info(h, "w", {2, 3}, 0, 0);      // F32 [3, 2]: 24 bytes, padded to 32
  tensor_info(h, "q", {32, 2}, 8, 32);    // Q8_0: 2 blocks of 34 bytes = 68, padded to 96
  tensor_info(h, "h", {4}, 1, 128);       // F16
  h.pad(32);
  const std::size_t data_offset = h.b.size();
  for (int i = 0; i < 6; ++i) h.put<float>(static_cast<float>(i) - 2.5f);
  h.pad(32);
  for (int blk = 0; blk < 2; ++blk) {
    h.put<std::uint16_t>(0x3C00);
    for (int i = 0; i < 32; ++i) h.put<std::int8_t>(static_cast<std::int8_t>(i - 16));
  }
  h.pad(32);
  h.put<std::uint16_t>(0x3C00).put<std::uint16_t>(0).put<std::uint16_t>(0xC000).put<std::uint16_t>(0x3800);
  h.pad(32);
  TempFile f(h.b);
  GgufFile g(f.path);
  CHECK(g.version() == 3);
  CHECK(g.alignment() == 32);
  CHECK(g.data_offset() == data_offset);
  CHECK(g.keys().size() == 9);
  CHECK(g.keys().front() == "general.architecture");
  CHECK(g.get_string("general.architecture") == "llama");
  CHECK(g.get_uint("u8") == 200);
  CHECK(g.get_int("i32") == -7);
  CHECK(g.get_uint("u64") == (1ull << 40));
  CHECK(g.get_float("f32") == 0.25);
  CHECK(g.get_float("f64") == -1.5);
  CHECK(g.get_bool("flag"));
  CHECK(g.get_string_array("tokens") == std::vector<std::string>{"a", "", "<s>"});
  CHECK(g.value("nested").type == GgufType::array);
  CHECK(g.value("nested").element_type == GgufType::array);
  CHECK(g.value("nested").count == 2);
  REQUIRE(g.tensors().size() == 3);
  const auto& w = g.tensor("w");
  CHECK(w.type == GgmlType::f32);
  CHECK(w.shape == std::vector<std::int64_t>{3, 2});
  CHECK(w.numel() == 6);
  REQUIRE(w.data.size() == 24);
  float w5;
  std::memcpy(&w5, w.data.data() + 20, 4);
  CHECK(w5 == 2.5f);
  CHECK(g.tensor("q").data.size() == 68);
  CHECK(g.tensor("q").offset == 32);
  CHECK(g.tensor("h").data.size() == 8);
  CHECK(g.find_tensor("absent") == nullptr);
  CHECK(assistgen::io::ggml_type_name(GgmlType::q8_0) == "Q8_0");
  CHECK(assistgen::io::ggml_type_name(static_cast<GgmlType>(4)) == "type 4");
  // Typed getters name the key on a type mismatch.
  CHECK_THROWS_WITH(g.get_string("u8"), Catch::Contains("key 'u8'") && Catch::Contains("UINT8"));
  CHECK_THROWS_WITH(g.get_uint("i32"), Catch::Contains("key 'i32'") && Catch::Contains("non-negative"));
  CHECK_THROWS_WITH(g.get_int_array("tokens"), Catch::Contains("key 'tokens'"));
  CHECK_THROWS_WITH(g.value("nope"), Catch::Contains("key 'nope'") && Catch::Contains("missing"));
  CHECK_THROWS_WITH(g.tensor("nope"), Catch::Contains("tensor 'nope'"));
}

TEST_CASE("gguf: v2 with general.alignment 64 honours the alignment") {
  Bytes h = header(2, 1, 2);
  h.str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(64);
  tensor_info(h, "a", {3}, 0, 0);
  tensor_info(h, "b", {2}, 30, 64);  // BF16, after a's 12 bytes padded to 64
  h.pad(64);
  const std::size_t data = h.b.size();
  h.put<float>(1).put<float>(2).put<float>(3).pad(64);
  h.put<std::uint16_t>(0x3F80).put<std::uint16_t>(0xBF80).pad(64);
  TempFile f(h.b);
  GgufFile g(f.path);
  CHECK(g.version() == 2);
  CHECK(g.alignment() == 64);
  CHECK(g.data_offset() == data);
  CHECK(g.data_offset() % 64 == 0);
  CHECK(g.tensor("b").data.data() == g.tensor("a").data.data() + 64);
  // The same file with b at 32 (the default alignment's place) is refused.
  Bytes bad = header(2, 1, 2);
  bad.str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(64);
  tensor_info(bad, "a", {3}, 0, 0);
  tensor_info(bad, "b", {2}, 30, 32);
  bad.pad(64).put<float>(1).put<float>(2).put<float>(3).pad(64);
  bad.put<std::uint16_t>(0x3F80).put<std::uint16_t>(0xBF80).pad(64);
  CHECK(has(open_error<FormatError>(bad.b), "tensor 'b': offset 32"));
}

TEST_CASE("gguf advisory class: header, magic, version and truncation") {
  CHECK(has(open_error<FormatError>("GGUF"), "shorter than a GGUF header"));
  CHECK(has(open_error<FormatError>(std::string("GGML") + std::string(20, '\0')), "not a GGUF file"));
  CHECK(has(open_error<UnsupportedError>(header(0, 0, 1).b), "version 1"));
  CHECK(has(open_error<UnsupportedError>(header(0, 0, 4).b), "version 4"));
  CHECK(has(open_error<UnsupportedError>(header(0, 0, 0x03000000).b), "big-endian"));
  // A key cut off in the middle of its value.
  Bytes h = header(0, 1);
  h.str("k").put<std::uint32_t>(10).put<std::uint32_t>(7);  // UINT64 with only 4 bytes
  CHECK(has(open_error<FormatError>(h.b), "value of key 'k'"));
}

TEST_CASE("gguf advisory class: tensor and key counts that would size allocations") {
  // Databricks 2024: n_tensors * sizeof(info) and n_kv wrapped calloc sizes.
  CHECK(has(open_error<FormatError>(header(~0ull / 2, 0).b), "tensor count"));
  CHECK(has(open_error<FormatError>(header(0, ~0ull).b), "metadata key count"));
  CHECK(has(open_error<FormatError>(header(1ull << 60, 0).b), "cannot fit"));
  // A count the file could hold by size but whose entries are missing.
  Bytes h = header(0, 2);
  h.str("a").put<std::uint32_t>(0).put<std::uint8_t>(1).raw(std::string(20, '\0'));
  CHECK_THROWS_AS(GgufFile(TempFile(h.b).path), FormatError);
}

TEST_CASE("gguf advisory class: string lengths past the file or wrapping len + 1") {
  Bytes key = header(0, 1);
  key.put<std::uint64_t>(~0ull).raw("k").raw(std::string(32, '\0'));  // calloc(len + 1) wrapped to calloc(0)
  CHECK(has(open_error<FormatError>(key.b), "metadata key 0 has length 18446744073709551615"));
  Bytes value = header(0, 1);
  value.str("name").put<std::uint32_t>(8).put<std::uint64_t>(1ull << 40).raw("x");
  CHECK(has(open_error<FormatError>(value.b), "value of key 'name' has length 1099511627776"));
  Bytes tname = header(1, 0);
  tname.put<std::uint64_t>(~0ull - 7).raw("t").raw(std::string(32, '\0'));
  CHECK(has(open_error<FormatError>(tname.b), "name of tensor 0"));
  // Tensor names longer than ggml's 63 bytes (a fixed buffer in ggml).
  Bytes longname = header(1, 0);
  tensor_info(longname, std::string(64, 'n'), {1}, 0, 0);
  longname.pad(32).put<float>(1).pad(32);
  CHECK(has(open_error<FormatError>(longname.b), "more than ggml's 63"));
  // Keys longer than the spec's 65535 bytes.
  Bytes longkey = header(0, 1);
  longkey.str(std::string(65536, 'k')).put<std::uint32_t>(0).put<std::uint8_t>(0);
  CHECK(has(open_error<FormatError>(longkey.b), "65535"));
}

TEST_CASE("gguf advisory class: array lengths whose n * size wraps, nested arrays included") {
  // 2^62 UINT32: n * 4 wraps to 0 in 64 bits.
  Bytes wrap = header(0, 1);
  wrap.str("arr").put<std::uint32_t>(9).put<std::uint32_t>(4).put<std::uint64_t>(1ull << 62);
  CHECK(has(open_error<FormatError>(wrap.b), "key 'arr': array of 4611686018427387904 UINT32"));
  // Strings: a count that cannot fit even with empty strings.
  Bytes strings = header(0, 1);
  strings.str("tok").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(1000).str("a");
  CHECK(has(open_error<FormatError>(strings.b), "key 'tok': array of 1000 STRING cannot fit"));
  // Nested: the inner array's length is the hostile one.
  Bytes nested = header(0, 1);
  nested.str("n").put<std::uint32_t>(9).put<std::uint32_t>(9).put<std::uint64_t>(1);
  nested.put<std::uint32_t>(12).put<std::uint64_t>(1ull << 61);  // 2^61 FLOAT64 = 2^64 bytes
  CHECK(has(open_error<FormatError>(nested.b), "key 'n': array of 2305843009213693952 FLOAT64"));
  // Deep nesting is bounded (no stack exhaustion).
  Bytes deep = header(0, 1);
  deep.str("d").put<std::uint32_t>(9);
  for (int i = 0; i < 10000; ++i) deep.put<std::uint32_t>(9).put<std::uint64_t>(1);
  deep.put<std::uint32_t>(0).put<std::uint64_t>(0);
  CHECK(has(open_error<FormatError>(deep.b), "nested more than"));
  // Unknown element and value types; BOOL other than 0/1.
  Bytes elem = header(0, 1);
  elem.str("e").put<std::uint32_t>(9).put<std::uint32_t>(13).put<std::uint64_t>(0);
  CHECK(has(open_error<FormatError>(elem.b), "element type 13"));
  Bytes vtype = header(0, 1);
  vtype.str("v").put<std::uint32_t>(77).put<std::uint64_t>(0);
  CHECK(has(open_error<FormatError>(vtype.b), "key 'v': value type 77"));
  Bytes boolean = header(0, 1);
  boolean.str("b").put<std::uint32_t>(7).put<std::uint8_t>(2);
  CHECK(has(open_error<FormatError>(boolean.b), "key 'b': BOOL value is 2"));
}

TEST_CASE("gguf advisory class: more than four dimensions and unknown tensor types") {
  Bytes dims = header(1, 0);
  tensor_info(dims, "t", {1, 1, 1, 1, 1}, 0, 0);
  CHECK(has(open_error<FormatError>(dims.b), "tensor 't': has 5 dimensions"));
  Bytes type = header(1, 0);
  tensor_info(type, "blk.0.attn_q.weight", {32}, 99, 0);
  const std::string msg = open_error<UnsupportedError>(type.b);
  CHECK(has(msg, "tensor 'blk.0.attn_q.weight'"));
  CHECK(has(msg, "ggml type 99"));
  Bytes removed = header(1, 0);
  tensor_info(removed, "w", {32}, 31, 0);  // Q4_0_4_4, removed from GGUF files
  CHECK(has(open_error<UnsupportedError>(removed.b), "ggml type 31"));
  Bytes block = header(1, 0);
  tensor_info(block, "w", {33}, 8, 0);  // Q8_0 needs a multiple of 32
  CHECK(has(open_error<FormatError>(block.b), "tensor 'w': first dimension 33 is not a multiple of Q8_0"));
}

TEST_CASE("gguf advisory class: ne * type size overflow (CVE-2025-53630, the 2^42 dimension)") {
  // The element count wraps 64 bits.
  Bytes numel = header(1, 0);
  tensor_info(numel, "token_embd.weight", {1ull << 42, 1ull << 22}, 0, 0);
  CHECK(has(open_error<FormatError>(numel.b), "tensor 'token_embd.weight': element count overflows"));
  // The count fits but count * 4 bytes does not.
  Bytes bytes = header(1, 0);
  tensor_info(bytes, "t", {1ull << 62}, 0, 0);
  CHECK(has(open_error<FormatError>(bytes.b), "tensor 't': byte size"));
  // A dimension past INT64_MAX.
  Bytes neg = header(1, 0);
  tensor_info(neg, "t", {~0ull}, 0, 0);
  CHECK(has(open_error<FormatError>(neg.b), "past INT64_MAX"));
  // The running sum of padded sizes (ctx->size in llama.cpp) overflowing:
  // two tensors of 2^63 - 32 bytes each, the second at the sum.
  Bytes sum = header(2, 0);
  tensor_info(sum, "a", {(1ull << 62) - 8}, 24, 0);  // I8
  tensor_info(sum, "b", {(1ull << 62) - 8}, 24, (1ull << 62) - 8);
  sum.pad(32);
  CHECK(has(open_error<FormatError>(sum.b), "tensor 'a': data"));  // past the end of the file first
}

TEST_CASE("gguf advisory class: tensor offsets and extents") {
  // Data past the end of the file.
  Bytes past = header(1, 0);
  tensor_info(past, "w", {1024}, 0, 0);
  past.pad(32).put<float>(1);
  CHECK(has(open_error<FormatError>(past.b), "tensor 'w': data [0, +4096) runs past the end"));
  // An offset that is not where llama.cpp's writer puts it (overlap, gap).
  Bytes overlap = header(2, 0);
  tensor_info(overlap, "a", {8}, 0, 0);
  tensor_info(overlap, "b", {8}, 0, 0);
  overlap.pad(32).raw(std::string(64, '\0'));
  CHECK(has(open_error<FormatError>(overlap.b), "tensor 'b': offset 0 is not where"));
  Bytes huge = header(1, 0);
  tensor_info(huge, "a", {8}, 0, ~0ull - 15);
  huge.pad(32).raw(std::string(32, '\0'));
  CHECK(has(open_error<FormatError>(huge.b), "tensor 'a': offset 18446744073709551600"));
  // Trailing bytes after the last tensor.
  Bytes trailing = header(1, 0);
  tensor_info(trailing, "a", {8}, 0, 0);
  trailing.pad(32).raw(std::string(64, '\0'));
  CHECK(has(open_error<FormatError>(trailing.b), "trailing bytes"));
}

TEST_CASE("gguf advisory class: general.alignment zero, not a power of two, huge or mistyped") {
  for (std::uint32_t a : {0u, 3u, 48u, 0x80000000u}) {
    Bytes h = header(0, 1);
    h.str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(a);
    CHECK(has(open_error<FormatError>(h.b), "key 'general.alignment': " + std::to_string(a)));
  }
  Bytes typed = header(0, 1);
  typed.str("general.alignment").put<std::uint32_t>(5).put<std::int32_t>(32);
  CHECK(has(open_error<FormatError>(typed.b), "INT32, expected UINT32"));
}

TEST_CASE("gguf advisory class: duplicate keys and tensors") {
  Bytes keys = header(0, 2);
  keys.str("k").put<std::uint32_t>(0).put<std::uint8_t>(1);
  keys.str("k").put<std::uint32_t>(0).put<std::uint8_t>(2);
  CHECK(has(open_error<FormatError>(keys.b), "key 'k': appears twice"));
  Bytes tensors = header(2, 0);
  tensor_info(tensors, "t", {8}, 0, 0);
  tensor_info(tensors, "t", {8}, 0, 32);
  tensors.pad(32).raw(std::string(64, '\0'));
  CHECK(has(open_error<FormatError>(tensors.b), "tensor 't': appears twice"));
  // Names with control bytes are escaped in messages.
  Bytes esc = header(2, 0);
  tensor_info(esc, "a\nb", {8}, 0, 0);
  tensor_info(esc, "a\nb", {8}, 0, 32);
  esc.pad(32).raw(std::string(64, '\0'));
  CHECK(has(open_error<FormatError>(esc.b), "tensor 'a\\x0ab'"));
}

TEST_CASE("gguf: is_gguf_path tells files from model directories") {
  Bytes h = header(0, 0);
  TempFile f(h.b);
  CHECK(assistgen::io::is_gguf_path(f.path));
  CHECK_FALSE(assistgen::io::is_gguf_path(fs::temp_directory_path()));
  CHECK(assistgen::io::is_gguf_path("/nonexistent/model.GGUF"));
}

TEST_CASE("checkpoint over views: decoded tensors and the owner's lifetime (for GGUF weights)") {
  // A Q8_0-like block decoded by TensorView::decode: values d * q.
  auto owner = std::make_shared<std::vector<std::byte>>(34);
  const std::uint16_t d = 0x3800;  // 0.5 in binary16
  std::memcpy(owner->data(), &d, 2);
  for (int i = 0; i < 32; ++i) (*owner)[2 + i] = static_cast<std::byte>(static_cast<std::int8_t>(i - 16));
  assistgen::io::TensorView v;
  v.name = "blk.0.ffn_up.weight";
  v.dtype = assistgen::DType::f32;
  v.shape = {1, 32};
  v.file = "model.gguf";
  v.data = std::span<const std::byte>(owner->data(), owner->size());
  const std::byte* raw = owner->data();
  v.decode = [raw](std::span<float> out) {
    std::uint16_t h;
    std::memcpy(&h, raw, 2);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = assistgen::io::f16_to_float(h) * static_cast<float>(static_cast<std::int8_t>(raw[2 + i]));
  };
  assistgen::io::Checkpoint ck("model.gguf", {v}, owner);
  owner.reset();  // the checkpoint keeps the bytes alive
  CHECK(ck.dir() == "model.gguf");
  CHECK(ck.contains("blk.0.ffn_up.weight"));
  const std::vector<float> f = ck.tensor("blk.0.ffn_up.weight").to_finite_float();
  REQUIRE(f.size() == 32);
  CHECK(f[0] == -8.0f);
  CHECK(f[31] == 7.5f);
  std::vector<float> wrong(3);
  CHECK_THROWS_AS(ck.tensor("blk.0.ffn_up.weight").to_float(wrong), assistgen::InvalidArgument);
  CHECK_THROWS_WITH(ck.tensor("absent"), Catch::Contains("model.gguf") && Catch::Contains("'absent'"));
  CHECK_THROWS_WITH(assistgen::io::Checkpoint("x.gguf", {v, v}, nullptr),
                    Catch::Contains("x.gguf") && Catch::Contains("given twice"));
}

// Safetensors reader/writer, half-precision conversions and checkpoint
// directories: round trips, exact conversions, and one test per way a file
// can be malformed (each must be a FormatError naming the file and tensor).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"

namespace fs = std::filesystem;
using assistgen::DType;
using assistgen::FormatError;
using assistgen::IoError;
using assistgen::io::Checkpoint;
using assistgen::io::SafetensorsFile;
using assistgen::io::TensorView;
using Catch::Matchers::Contains;

namespace {

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ =
        fs::temp_directory_path() / ("assistgen_test_safetensors_" + std::to_string(::getpid()) +
                                     "_" + std::to_string(counter++) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

TensorView make_view(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                     const std::vector<std::byte>& data) {
  TensorView v;
  v.name = name;
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.data = data;
  return v;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string le64(std::uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A raw file: the header length field, the header text, then `data_bytes`
// zero bytes. `declared_len` overrides the length field.
fs::path raw_file(const TempDir& dir, const std::string& header, std::size_t data_bytes,
                  std::uint64_t declared_len = std::numeric_limits<std::uint64_t>::max()) {
  const fs::path path = dir / "bad.safetensors";
  const std::uint64_t len =
      declared_len == std::numeric_limits<std::uint64_t>::max() ? header.size() : declared_len;
  write_bytes(path, le64(len) + header + std::string(data_bytes, '\0'));
  return path;
}

// Opening `path` must throw FormatError whose message names the file and
// contains every string in `needles`.
void require_format_error(const fs::path& path, const std::vector<std::string>& needles) {
  REQUIRE_THROWS_AS(SafetensorsFile(path), FormatError);
  REQUIRE_THROWS_WITH(SafetensorsFile(path), Contains(path.string()));
  for (const auto& needle : needles) {
    REQUIRE_THROWS_WITH(SafetensorsFile(path), Contains(needle));
  }
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

}  // namespace

// ---------------------------------------------------------------------------
// Round trips

TEST_CASE("safetensors round trip keeps every dtype, shape, byte and metadata") {
  TempDir dir;
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, 1e-8f, 65504.0f};
  const std::vector<std::uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001};   // 1, -2, 65504, 2^-24
  const std::vector<std::uint16_t> bf16 = {0x3F80, 0x4049, 0xBF00, 0x0000};  // 1, 3.140625, -0.5, 0
  const std::vector<std::int8_t> i8 = {-128, 0, 127};
  const std::vector<std::uint8_t> u8 = {0, 1, 2, 254, 255};
  const std::vector<std::int32_t> i32 = {-7, 1 << 30};
  const std::vector<std::int64_t> i64 = {std::int64_t{1} << 40};
  const std::vector<float> empty;
  const std::vector<float> scalar = {42.0f};  // rank 0: one element
  const auto scalar_bytes = bytes_of(scalar);
  const auto f32_bytes = bytes_of(f32), f16_bytes = bytes_of(f16), bf16_bytes = bytes_of(bf16),
             i8_bytes = bytes_of(i8), u8_bytes = bytes_of(u8), i32_bytes = bytes_of(i32),
             i64_bytes = bytes_of(i64), empty_bytes = bytes_of(empty);
  const std::vector<TensorView> all = {make_view("f32", DType::f32, {2, 3}, f32_bytes),
                                       make_view("f16", DType::f16, {4}, f16_bytes),
                                       make_view("bf16", DType::bf16, {2, 2}, bf16_bytes),
                                       make_view("i8", DType::i8, {3}, i8_bytes),
                                       make_view("u8", DType::u8, {5, 1}, u8_bytes),
                                       make_view("i32", DType::i32, {2}, i32_bytes),
                                       make_view("i64", DType::i64, {1}, i64_bytes),
                                       make_view("empty", DType::f32, {0, 4}, empty_bytes),
                                       make_view("scalar_like", DType::f32, {}, scalar_bytes)};

  const fs::path path = dir / "model.safetensors";
  assistgen::io::write_safetensors(path, all, {{"format", "pt"}, {"note", "round trip"}});

  // Header length is a multiple of 8 and the padding is spaces.
  const std::string raw = read_bytes(path);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(raw[i]);
  CHECK(header_len % 8 == 0);
  CHECK(raw[8] == '{');
  const std::string header = raw.substr(8, header_len);
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));

  const SafetensorsFile file(path);
  CHECK(file.path() == path);
  CHECK(file.names() == std::vector<std::string>{"bf16", "empty", "f16", "f32", "i32", "i64", "i8",
                                                 "scalar_like", "u8"});
  CHECK(file.metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}});
  for (const TensorView& expected : all) {
    INFO(expected.name);
    REQUIRE(file.contains(expected.name));
    const TensorView& got = file.tensor(expected.name);
    CHECK(got.name == expected.name);
    CHECK(got.dtype == expected.dtype);
    CHECK(got.shape == expected.shape);
    CHECK(got.file == path.string());
    REQUIRE(got.data.size() == expected.data.size());
    CHECK(std::equal(got.data.begin(), got.data.end(), expected.data.begin()));
  }
  CHECK(file.tensor("empty").numel() == 0);
  CHECK(file.tensor("empty").to_float().empty());
  CHECK(file.tensor("scalar_like").numel() == 1);
  CHECK(file.tensor("scalar_like").to_float() == std::vector<float>{42.0f});
  CHECK(file.tensor("f32").to_float() == f32);
  CHECK(file.tensor("f16").to_float() == std::vector<float>{1.0f, -2.0f, 65504.0f, 0x1p-24f});
  CHECK(file.tensor("bf16").to_float() == std::vector<float>{1.0f, 3.140625f, -0.5f, 0.0f});

  // Integer tensors cannot be read as floats; the message names file, tensor and dtype.
  REQUIRE_THROWS_AS(file.tensor("i8").to_float(), FormatError);
  REQUIRE_THROWS_WITH(file.tensor("i8").to_float(),
                      Contains(path.string()) && Contains("'i8'") && Contains("I8"));
  std::vector<float> wrong_size(3);
  REQUIRE_THROWS_AS(file.tensor("f16").to_float(wrong_size), assistgen::InvalidArgument);

  // Absent tensor: FormatError naming the file and the tensor.
  REQUIRE_THROWS_AS(file.tensor("missing"), FormatError);
  REQUIRE_THROWS_WITH(file.tensor("missing"), Contains(path.string()) && Contains("missing"));

  // Moving keeps the views valid.
  const TensorView* before = &file.tensor("f32");
  SafetensorsFile moved = SafetensorsFile(path);
  const std::vector<float> first = moved.tensor("f32").to_float();
  SafetensorsFile other = std::move(moved);
  CHECK(other.tensor("f32").to_float() == first);
  CHECK(before->to_float() == f32);
}

TEST_CASE("safetensors to_float reads tensors at unaligned offsets") {
  TempDir dir;
  const auto one = bytes_of(std::vector<std::uint8_t>{7});
  const std::vector<float> f32 = {1.5f, -3.0f, 1e30f};
  const std::vector<std::uint16_t> f16 = {0x3555, 0x8400};  // ~0.33325, -2^-14
  const auto f32_bytes = bytes_of(f32), f16_bytes = bytes_of(f16);
  const fs::path path = dir / "unaligned.safetensors";
  // Written in order: 1 byte, then the f32 data starts at an odd offset.
  assistgen::io::write_safetensors(path, {make_view("a_pad", DType::u8, {1}, one),
                                          make_view("b_f32", DType::f32, {3}, f32_bytes),
                                          make_view("c_f16", DType::f16, {2}, f16_bytes)});
  const SafetensorsFile file(path);
  CHECK(reinterpret_cast<std::uintptr_t>(file.tensor("b_f32").data.data()) % 4 != 0);
  CHECK(file.tensor("b_f32").to_float() == f32);
  CHECK(file.tensor("c_f16").to_float() == std::vector<float>{0.333251953125f, -0x1p-14f});
}

TEST_CASE("safetensors accepts a header with no tensors") {
  TempDir dir;
  const fs::path path = raw_file(dir, "{}      ", 0);
  const SafetensorsFile file(path);
  CHECK(file.names().empty());
  CHECK(file.metadata().empty());
}

TEST_CASE("write_safetensors rejects inconsistent tensors") {
  TempDir dir;
  const auto four = bytes_of(std::vector<float>{1, 2, 3, 4});
  CHECK_THROWS_AS(assistgen::io::write_safetensors(dir / "x.safetensors",
                                                   {make_view("w", DType::f32, {3}, four)}),
                  assistgen::InvalidArgument);
  CHECK_THROWS_AS(assistgen::io::write_safetensors(dir / "x.safetensors",
                                                   {make_view("w", DType::f32, {4}, four),
                                                    make_view("w", DType::f32, {4}, four)}),
                  assistgen::InvalidArgument);
  CHECK_THROWS_AS(assistgen::io::write_safetensors(dir / "no_such_dir" / "x.safetensors",
                                                   {make_view("w", DType::f32, {4}, four)}),
                  IoError);
}

// ---------------------------------------------------------------------------
// Half-precision conversions

TEST_CASE("f16_to_float is exact on known values") {
  using assistgen::io::f16_to_float;
  CHECK(f16_to_float(0x0000) == 0.0f);
  CHECK(std::signbit(f16_to_float(0x8000)));
  CHECK(f16_to_float(0x8000) == 0.0f);
  CHECK(f16_to_float(0x3C00) == 1.0f);
  CHECK(f16_to_float(0xC000) == -2.0f);
  CHECK(f16_to_float(0x3800) == 0.5f);
  CHECK(f16_to_float(0x3555) == 0.333251953125f);
  CHECK(f16_to_float(0x7BFF) == 65504.0f);
  CHECK(f16_to_float(0x0400) == 0x1p-14f);            // smallest normal
  CHECK(f16_to_float(0x0001) == 0x1p-24f);            // smallest subnormal
  CHECK(f16_to_float(0x03FF) == 1023.0f * 0x1p-24f);  // largest subnormal
  CHECK(f16_to_float(0x8001) == -0x1p-24f);
  CHECK(f16_to_float(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_to_float(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_to_float(0x7E00)));
  CHECK(std::isnan(f16_to_float(0x7C01)));  // signalling NaN stays NaN, not infinity
  CHECK(std::isnan(f16_to_float(0xFE00)));
}

TEST_CASE("f16 conversions agree with the binary16 definition for all 65536 values") {
  using assistgen::io::f16_to_float;
  using assistgen::io::float_to_f16;
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const int exponent = (h >> 10) & 0x1f;
    const int mantissa = h & 0x3ff;
    const float sign = (h & 0x8000) != 0 ? -1.0f : 1.0f;
    const float got = f16_to_float(bits);
    if (exponent == 0x1f) {
      if (mantissa == 0) {
        REQUIRE(got == sign * std::numeric_limits<float>::infinity());
        REQUIRE(float_to_f16(got) == bits);
      } else {
        REQUIRE(std::isnan(got));
        const std::uint16_t back = float_to_f16(got);
        REQUIRE((back & 0x7C00) == 0x7C00);
        REQUIRE((back & 0x03FF) != 0);
      }
      continue;
    }
    const double expected = exponent == 0
                                ? sign * std::ldexp(static_cast<double>(mantissa), -24)
                                : sign * std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
    INFO("bits 0x" << std::hex << h);
    REQUIRE(static_cast<double>(got) == expected);
    REQUIRE(std::signbit(got) == ((h & 0x8000) != 0));
    REQUIRE(float_to_f16(got) == bits);
  }
}

TEST_CASE("float_to_f16 rounds to nearest even, overflows to infinity") {
  using assistgen::io::float_to_f16;
  CHECK(float_to_f16(1.0f) == 0x3C00);
  CHECK(float_to_f16(-2.0f) == 0xC000);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1).
  CHECK(float_to_f16(1.0f + 0x1p-11f) == 0x3C00);
  // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties to even (1 + 2^-9).
  CHECK(float_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02);
  CHECK(float_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01);
  CHECK(float_to_f16(65504.0f) == 0x7BFF);
  CHECK(float_to_f16(65519.0f) == 0x7BFF);
  CHECK(float_to_f16(65520.0f) == 0x7C00);  // rounds past the largest finite value
  CHECK(float_to_f16(-1e10f) == 0xFC00);
  CHECK(float_to_f16(2047.5f * 0x1p-11f) == 0x3C00);  // carry from mantissa into exponent
  // Subnormal outputs.
  CHECK(float_to_f16(0x1p-24f) == 0x0001);
  CHECK(float_to_f16(0x1p-25f) == 0x0000);             // tie with 0 and 2^-24: even is 0
  CHECK(float_to_f16(0x1p-25f * 1.0001f) == 0x0001);   // just above the tie
  CHECK(float_to_f16(3 * 0x1p-25f) == 0x0002);         // tie between 1 and 2: even is 2
  CHECK(float_to_f16(0x1p-14f - 0x1p-25f) == 0x0400);  // rounds up into the smallest normal
  CHECK(float_to_f16(1e-10f) == 0x0000);
  CHECK(float_to_f16(-1e-10f) == 0x8000);
  CHECK(float_to_f16(std::numeric_limits<float>::infinity()) == 0x7C00);
  const std::uint16_t nan = float_to_f16(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);
}

TEST_CASE("bf16 conversions are exact and round to nearest even") {
  using assistgen::io::bf16_to_float;
  using assistgen::io::float_to_bf16;
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0xC000) == -2.0f);
  CHECK(bf16_to_float(0x4049) == 3.140625f);
  CHECK(bf16_to_float(0x7F7F) == 0x1.FEp127f);  // largest finite
  CHECK(bf16_to_float(0x0001) == 0x1p-133f);    // smallest subnormal
  CHECK(bf16_to_float(0x7F80) == std::numeric_limits<float>::infinity());
  CHECK(bf16_to_float(0xFF80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16_to_float(0x7FC0)));
  CHECK(std::signbit(bf16_to_float(0x8000)));
  // Every bf16 value survives float and back; NaNs stay NaN.
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = bf16_to_float(bits);
    REQUIRE(std::bit_cast<std::uint32_t>(f) == h << 16);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(bf16_to_float(float_to_bf16(f))));
    } else {
      REQUIRE(float_to_bf16(f) == bits);
    }
  }
  CHECK(float_to_bf16(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie, even stays
  CHECK(float_to_bf16(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie, odd rounds up
  CHECK(float_to_bf16(std::bit_cast<float>(0x3F808001u)) == 0x3F81);  // above the tie
  CHECK(float_to_bf16(std::bit_cast<float>(0x7F7FFFFFu)) == 0x7F80);  // overflow to infinity
  // A NaN whose payload sits only in the low half must not become infinity.
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));
}

// ---------------------------------------------------------------------------
// Malformed files: one case each.

TEST_CASE("safetensors rejects an empty file") {
  TempDir dir;
  const fs::path path = dir / "empty.safetensors";
  write_bytes(path, "");
  require_format_error(path, {"0 bytes", "shorter than"});
}

TEST_CASE("safetensors rejects a file shorter than 8 bytes") {
  TempDir dir;
  const fs::path path = dir / "short.safetensors";
  write_bytes(path, std::string("\x02\0\0\0\0", 5));
  require_format_error(path, {"5 bytes", "shorter than"});
}

TEST_CASE("safetensors rejects a header length past the end of the file") {
  TempDir dir;
  require_format_error(raw_file(dir, "{}", 0, 1000), {"header length 1000", "past the end"});
}

TEST_CASE("safetensors rejects a header length over 100 MB") {
  TempDir dir;
  require_format_error(raw_file(dir, "{}", 0, 200'000'000), {"200000000", "100 MB"});
  // A length so large that 8 + length would overflow must not wrap around.
  require_format_error(raw_file(dir, "{}", 0, std::numeric_limits<std::uint64_t>::max() - 3),
                       {"100 MB"});
}

TEST_CASE("safetensors rejects a header that is not JSON") {
  TempDir dir;
  require_format_error(raw_file(dir, "{not json at all", 0), {"invalid JSON"});
  // Invalid UTF-8 inside a string.
  require_format_error(raw_file(dir, "{\"w\xff\":{}}", 0), {"invalid JSON"});
  // Something after the object other than space padding.
  require_format_error(raw_file(dir, "{} x", 0), {"invalid JSON"});
}

TEST_CASE("safetensors rejects a header that is not an object") {
  TempDir dir;
  require_format_error(raw_file(dir, "[1, 2, 3]", 0), {"not a JSON object"});
  // Deep nesting must not exhaust the stack: the parser stops at 64 levels.
  const std::size_t depth = 1'000'000;
  require_format_error(raw_file(dir, std::string(depth, '[') + std::string(depth, ']'), 0),
                       {"nested deeper than 64 levels"});
  require_format_error(raw_file(dir, "{\"w\": [0, 4]}", 4), {"'w'", "not an object"});
}

TEST_CASE("safetensors rejects an unknown dtype naming tensor and dtype") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("layer.w", "F99", "[1]", "[0,4]") + "}", 4),
                       {"'layer.w'", "F99"});
  require_format_error(raw_file(dir, "{" + entry("d", "F64", "[1]", "[0,8]") + "}", 8),
                       {"'d'", "F64"});
  require_format_error(
      raw_file(dir, "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
      {"'w'", "dtype"});
}

TEST_CASE("safetensors rejects a gap between tensors") {
  TempDir dir;
  const std::string header =
      "{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[8,12]") + "}";
  require_format_error(raw_file(dir, header, 12), {"'b'", "gap"});
  // A gap at the very start.
  require_format_error(raw_file(dir, "{" + entry("a", "F32", "[1]", "[4,8]") + "}", 8),
                       {"'a'", "gap"});
}

TEST_CASE("safetensors rejects overlapping tensors") {
  TempDir dir;
  const std::string header =
      "{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "}";
  require_format_error(raw_file(dir, header, 12), {"'b'", "overlap", "'a'"});
  // Two tensors on the same bytes.
  const std::string same =
      "{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[0,4]") + "}";
  require_format_error(raw_file(dir, same, 4), {"'b'", "overlap"});
}

TEST_CASE("safetensors rejects data offsets out of bounds (truncated file)") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[4]", "[0,16]") + "}", 8),
                       {"'w'", "out of bounds"});

  // A valid file cut short, in its data and in its header.
  const auto data = bytes_of(std::vector<float>{1, 2, 3, 4});
  const fs::path good = dir / "good.safetensors";
  assistgen::io::write_safetensors(good, {make_view("w", DType::f32, {4}, data)});
  const std::string raw = read_bytes(good);
  const fs::path cut = dir / "cut.safetensors";
  write_bytes(cut, raw.substr(0, raw.size() - 4));
  require_format_error(cut, {"'w'", "out of bounds"});
  write_bytes(cut, raw.substr(0, 20));
  require_format_error(cut, {"past the end"});
}

TEST_CASE("safetensors rejects begin after end") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[1]", "[8,4]") + "}", 8),
                       {"'w'", "begin 8 is after end 4"});
}

TEST_CASE("safetensors rejects a shape that does not match the byte span") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[3]", "[0,8]") + "}", 8),
                       {"'w'", "needs 12"});
  require_format_error(raw_file(dir, "{" + entry("h", "BF16", "[2,2]", "[0,4]") + "}", 4),
                       {"'h'", "needs 8"});
}

TEST_CASE("safetensors rejects a shape whose size overflows") {
  TempDir dir;
  const std::string huge = "[1099511627776,1099511627776]";  // [2^40, 2^40]
  require_format_error(raw_file(dir, "{" + entry("w", "F32", huge, "[0,0]") + "}", 0),
                       {"'w'", "overflows"});
  // numel fits but numel * 8 bytes does not.
  require_format_error(
      raw_file(dir, "{" + entry("v", "I64", "[4611686018427387904]", "[0,0]") + "}", 0),
      {"'v'", "overflows"});
  // A dimension beyond int64 (JSON numbers past uint64 become floats).
  require_format_error(
      raw_file(dir, "{" + entry("x", "U8", "[18446744073709551615]", "[0,0]") + "}", 0),
      {"'x'", "shape"});
}

TEST_CASE("safetensors rejects trailing bytes after the data") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[1]", "[0,4]") + "}", 12),
                       {"8 trailing bytes"});
  require_format_error(raw_file(dir, "{}", 3), {"3 trailing bytes"});
}

TEST_CASE("safetensors rejects duplicate tensor names") {
  TempDir dir;
  const std::string header =
      "{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}";
  require_format_error(raw_file(dir, header, 8), {"duplicate", "'w'"});
  // A duplicated field inside one entry is caught too, naming the tensor.
  const std::string field_twice =
      "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  require_format_error(raw_file(dir, field_twice, 4), {"duplicate", "'dtype'", "'w'"});
}

TEST_CASE("safetensors rejects a bad __metadata__") {
  TempDir dir;
  require_format_error(raw_file(dir, "{\"__metadata__\":{\"format\":1}}", 0),
                       {"__metadata__", "'format'", "not a string"});
  require_format_error(raw_file(dir, "{\"__metadata__\":[\"pt\"]}", 0),
                       {"__metadata__", "not an object"});
  require_format_error(raw_file(dir, "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0),
                       {"__metadata__", "'a'"});
}

TEST_CASE("safetensors rejects negative and non-integer shape entries") {
  TempDir dir;
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[-1]", "[0,0]") + "}", 0),
                       {"'w'", "-1"});
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[1.5]", "[0,4]") + "}", 4),
                       {"'w'", "1.5"});
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[\"1\"]", "[0,4]") + "}", 4),
                       {"'w'", "shape"});
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "4", "[0,16]") + "}", 16),
                       {"'w'", "not an array"});
}

TEST_CASE("safetensors rejects malformed tensor entries") {
  TempDir dir;
  require_format_error(raw_file(dir, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
                       {"'w'", "missing field 'data_offsets'"});
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[1]", "[0,4,8]") + "}", 4),
                       {"'w'", "data_offsets"});
  require_format_error(raw_file(dir, "{" + entry("w", "F32", "[1]", "[-4,0]") + "}", 4),
                       {"'w'", "data_offsets"});
  require_format_error(
      raw_file(dir, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}",
               4),
      {"'w'", "'extra'"});
}

TEST_CASE("safetensors reports missing files and directories as IoError") {
  TempDir dir;
  const fs::path missing = dir / "missing.safetensors";
  REQUIRE_THROWS_AS(SafetensorsFile(missing), IoError);
  REQUIRE_THROWS_WITH(SafetensorsFile(missing), Contains(missing.string()));
  REQUIRE_THROWS_AS(SafetensorsFile(dir.path()), IoError);
}

// ---------------------------------------------------------------------------
// Checkpoint directories

namespace {

void write_index(const TempDir& dir, const std::string& weight_map_json) {
  write_bytes(dir / "model.safetensors.index.json",
              "{\"metadata\":{\"total_size\":0},\"weight_map\":" + weight_map_json + "}");
}

}  // namespace

TEST_CASE("Checkpoint opens a single-file model directory") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1, 2});
  assistgen::io::write_safetensors(dir / "model.safetensors",
                                   {make_view("embed", DType::f32, {2}, a)});
  const Checkpoint ckpt(dir.path());
  CHECK(ckpt.dir() == dir.path());
  CHECK(ckpt.names() == std::vector<std::string>{"embed"});
  CHECK(ckpt.contains("embed"));
  CHECK_FALSE(ckpt.contains("lm_head"));
  CHECK(ckpt.tensor("embed").to_float() == std::vector<float>{1, 2});
  REQUIRE_THROWS_AS(ckpt.tensor("lm_head"), FormatError);
  REQUIRE_THROWS_WITH(ckpt.tensor("lm_head"),
                      Contains(dir.path().string()) && Contains("'lm_head'"));
}

TEST_CASE("Checkpoint loads a sharded model through its index") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1, 2, 3});
  const auto b = bytes_of(std::vector<std::uint16_t>{0x3F80, 0x4000});  // bf16 1, 2
  const auto c = bytes_of(std::vector<float>{-1});
  assistgen::io::write_safetensors(dir / "model-00001-of-00002.safetensors",
                                   {make_view("model.embed_tokens.weight", DType::f32, {3}, a),
                                    make_view("model.norm.weight", DType::f32, {1}, c)});
  assistgen::io::write_safetensors(dir / "model-00002-of-00002.safetensors",
                                   {make_view("lm_head.weight", DType::bf16, {2}, b)});
  write_index(dir,
              R"({"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                  "model.norm.weight": "model-00001-of-00002.safetensors",
                  "lm_head.weight": "model-00002-of-00002.safetensors"})");
  Checkpoint ckpt(dir.path());
  CHECK(ckpt.names() == std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                                 "model.norm.weight"});
  CHECK(ckpt.tensor("model.embed_tokens.weight").to_float() == std::vector<float>{1, 2, 3});
  CHECK(ckpt.tensor("lm_head.weight").to_float() == std::vector<float>{1, 2});
  CHECK(ckpt.tensor("lm_head.weight").file == (dir / "model-00002-of-00002.safetensors").string());
  CHECK(ckpt.tensor("model.norm.weight").to_float() == std::vector<float>{-1});

  // Views survive moving the checkpoint.
  const TensorView* view = &ckpt.tensor("lm_head.weight");
  Checkpoint moved = std::move(ckpt);
  CHECK(&moved.tensor("lm_head.weight") == view);
}

TEST_CASE("Checkpoint without weights is an IoError naming the directory") {
  TempDir dir;
  REQUIRE_THROWS_AS(Checkpoint(dir.path()), IoError);
  REQUIRE_THROWS_WITH(Checkpoint(dir.path()),
                      Contains(dir.path().string()) && Contains("model.safetensors"));
}

TEST_CASE("Checkpoint rejects an index naming a missing shard") {
  TempDir dir;
  write_index(dir, R"({"w": "model-00001-of-00001.safetensors"})");
  REQUIRE_THROWS_AS(Checkpoint(dir.path()), FormatError);
  REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains("model.safetensors.index.json") &&
                                                  Contains("model-00001-of-00001.safetensors"));
}

TEST_CASE("Checkpoint rejects a tensor missing from its shard") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1});
  assistgen::io::write_safetensors(dir / "s1.safetensors", {make_view("a", DType::f32, {1}, a)});
  write_index(dir, R"({"a": "s1.safetensors", "b": "s1.safetensors"})");
  REQUIRE_THROWS_AS(Checkpoint(dir.path()), FormatError);
  REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains("model.safetensors.index.json") &&
                                                  Contains("'b'") && Contains("s1.safetensors"));
}

TEST_CASE("Checkpoint rejects shard names that leave the directory") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1});
  fs::create_directories(dir / "sub");
  assistgen::io::write_safetensors(dir / "sub" / "s.safetensors",
                                   {make_view("a", DType::f32, {1}, a)});
  for (const std::string shard : {"../s.safetensors", "sub/s.safetensors", "/tmp/s.safetensors",
                                  "..", "", "sub\\\\s.safetensors"}) {
    INFO(shard);
    write_index(dir, "{\"a\": \"" + shard + "\"}");
    REQUIRE_THROWS_AS(Checkpoint(dir.path()), FormatError);
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()),
                        Contains("'a'") && Contains("not a plain file name"));
  }
}

TEST_CASE("Checkpoint rejects a tensor present in two shards") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1});
  assistgen::io::write_safetensors(dir / "s1.safetensors", {make_view("a", DType::f32, {1}, a)});
  assistgen::io::write_safetensors(dir / "s2.safetensors", {make_view("a", DType::f32, {1}, a),
                                                            make_view("b", DType::f32, {1}, a)});
  write_index(dir, R"({"a": "s1.safetensors", "b": "s2.safetensors"})");
  REQUIRE_THROWS_AS(Checkpoint(dir.path()), FormatError);
  REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains("'a'") && Contains("two shards") &&
                                                  Contains("s1.safetensors") &&
                                                  Contains("s2.safetensors"));
}

TEST_CASE("Checkpoint rejects malformed indexes") {
  TempDir dir;
  const auto a = bytes_of(std::vector<float>{1});
  assistgen::io::write_safetensors(dir / "s1.safetensors", {make_view("a", DType::f32, {1}, a),
                                                            make_view("b", DType::f32, {1}, a)});
  const std::string index = (dir / "model.safetensors.index.json").string();
  SECTION("tensor in a shard but not in the index") {
    write_index(dir, R"({"a": "s1.safetensors"})");
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()),
                        Contains(index) && Contains("'b'") && Contains("not listed"));
  }
  SECTION("duplicate entries in weight_map") {
    write_index(dir, R"({"a": "s1.safetensors", "b": "s1.safetensors", "a": "s1.safetensors"})");
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()),
                        Contains(index) && Contains("duplicate") && Contains("'a'"));
  }
  SECTION("no weight_map") {
    write_bytes(index, "{\"metadata\": {}}");
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains(index) && Contains("weight_map"));
  }
  SECTION("not JSON") {
    write_bytes(index, "{\"weight_map\": ");
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains(index) && Contains("invalid JSON"));
  }
  SECTION("shard name not a string") {
    write_index(dir, R"({"a": 1})");
    REQUIRE_THROWS_WITH(Checkpoint(dir.path()), Contains(index) && Contains("'a'"));
  }
  REQUIRE_THROWS_AS(Checkpoint(dir.path()), FormatError);
}

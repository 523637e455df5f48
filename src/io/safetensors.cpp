// Safetensors reading (mmap + full format validation), writing, and the
// half-precision conversions the reader needs.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON (an
// object: tensor name -> {dtype, shape, data_offsets}, plus an optional
// "__metadata__" object of strings), then the data section. data_offsets are
// relative to the data section; taken in order of `begin` they must tile it
// exactly, with no gap, no overlap and nothing after the last tensor.
#include "assistgen/io/safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "assistgen/error.hpp"
#include "file_mapping.hpp"
#include "json_file.hpp"
#include "strict_json.hpp"

namespace assistgen::io {

namespace {

// The reference implementation's cap; a larger header is a corrupt or hostile file.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";

using detail::json_type_name;
using nlohmann::json;

struct DTypeName {
  std::string_view name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {
    {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16}, {"I8", DType::i8},
    {"U8", DType::u8},   {"I32", DType::i32}, {"I64", DType::i64},
};

bool dtype_from_name(std::string_view name, DType& out) {
  for (const auto& entry : kDTypeNames) {
    if (entry.name == name) {
      out = entry.dtype;
      return true;
    }
  }
  return false;
}

std::string_view safetensors_dtype_name(DType t) {
  for (const auto& entry : kDTypeNames) {
    if (entry.dtype == t) return entry.name;
  }
  return "?";
}

std::string shape_string(const json& shape) { return detail::json_excerpt(shape); }

// Reads a non-negative JSON integer that fits in uint64.
bool json_to_u64(const json& j, std::uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<std::uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    const auto v = j.get<std::int64_t>();
    if (v < 0) return false;
    out = static_cast<std::uint64_t>(v);
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// Half-precision conversions.

float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) {
    // Infinity or NaN; the NaN payload moves to the top of the float mantissa.
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float bf16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t float_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    // NaN: keep the sign and force a quiet bit so truncation cannot make it infinity.
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

std::uint16_t float_to_f16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) {
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((abs_bits >> 13) & 0x3ffu));
  }
  if (abs_bits >= 0x477ff000u) {
    // >= 65520 rounds past the largest finite half (65504): infinity.
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (abs_bits >= 0x38800000u) {
    // Normal half range [2^-14, 65520): rebias the exponent and round the
    // 13 dropped mantissa bits to nearest even. A carry into the exponent is
    // the correct result.
    const std::uint32_t rebased = abs_bits - (112u << 23);
    const std::uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rebased + rounding) >> 13));
  }
  if (abs_bits < 0x33000000u) {
    // Below 2^-25 (half the smallest subnormal): rounds to zero.
    return sign;
  }
  // Subnormal half: the value is m * 2^-24 with m = |x| * 2^24 in [0.5, 1024).
  const std::uint32_t exponent = abs_bits >> 23;                      // 102..112
  const std::uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;  // implicit 1
  const std::uint32_t shift = 126u - exponent;                        // 14..24
  std::uint32_t result = mantissa >> shift;
  const std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  if (remainder > halfway || (remainder == halfway && (result & 1u) != 0)) ++result;
  return static_cast<std::uint16_t>(sign | result);
}

// ---------------------------------------------------------------------------
// TensorView

std::size_t TensorView::numel() const {
  std::size_t n = 1;
  for (const auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

void TensorView::to_float(std::span<float> out) const {
  const std::size_t n = numel();
  if (out.size() != n) {
    throw InvalidArgument(file + ": tensor '" + name + "': to_float output has " +
                          std::to_string(out.size()) + " elements, tensor has " +
                          std::to_string(n));
  }
  if (decode) {
    decode(out);
    return;
  }
  if (data.size() != n * dtype_size(dtype)) {
    throw FormatError(file + ": tensor '" + name + "': holds " + std::to_string(data.size()) +
                      " bytes, shape and dtype need " + std::to_string(n * dtype_size(dtype)));
  }
  // The mmap gives no alignment guarantee for a tensor's data, hence memcpy.
  const std::byte* src = data.data();
  switch (dtype) {
    case DType::f32:
      if (n != 0) std::memcpy(out.data(), src, n * sizeof(float));
      return;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = f16_to_float(h);
      }
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = bf16_to_float(h);
      }
      return;
    default:
      throw FormatError(file + ": tensor '" + name + "': dtype " +
                        std::string(safetensors_dtype_name(dtype)) +
                        " cannot be converted to float (only F32, F16, BF16)");
  }
}

std::vector<float> TensorView::to_float() const {
  std::vector<float> out(numel());
  to_float(out);
  return out;
}

std::vector<float> TensorView::to_finite_float() const {
  std::vector<float> out = to_float();
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      std::string index;
      std::size_t rest = i;
      for (std::size_t d = shape.size(); d-- > 0;) {
        const auto dim = static_cast<std::size_t>(shape[d]);
        index = std::to_string(rest % dim) + (index.empty() ? "" : ", ") + index;
        rest /= dim;
      }
      throw FormatError(file + ": tensor '" + name + "': element [" + index + "] is " +
                        (std::isnan(out[i]) ? "NaN" : out[i] > 0 ? "+inf" : "-inf") +
                        "; model weights must be finite");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// SafetensorsFile

struct SafetensorsFile::Impl {
  std::filesystem::path path;
  detail::FileMapping mapping;
  std::map<std::string, TensorView> tensors;
  std::map<std::string, std::string> metadata;

  void load();
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(path.string() + ": " + what);
  }
  [[noreturn]] void fail_tensor(const std::string& tensor, const std::string& what) const {
    throw FormatError(path.string() + ": tensor '" + tensor + "': " + what);
  }
};

void SafetensorsFile::Impl::load() {
  mapping.map(path, "a safetensors file");
  const std::byte* base = mapping.data();
  const std::uint64_t file_size = mapping.size();
  if (file_size < 8) {
    fail("file is " + std::to_string(file_size) +
         " bytes, shorter than the 8-byte header length field");
  }

  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<std::uint64_t>(base[i]);
  }
  if (header_len > kMaxHeaderBytes) {
    fail("header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  }
  if (header_len > file_size - 8) {
    fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
         std::to_string(file_size) + " bytes)");
  }
  const std::string_view header_text(reinterpret_cast<const char*>(base + 8), header_len);
  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_len = file_size - data_start;

  const json header =
      detail::parse_strict_json<FormatError>(header_text, path.string() + ": header");
  if (!header.is_object()) fail("header is " + json_type_name(header) + ", not a JSON object");

  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      if (!info.is_object()) fail("__metadata__ is " + json_type_name(info) + ", not an object");
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) {
          fail("__metadata__ entry '" + key + "' is " + json_type_name(value) + ", not a string");
        }
        metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    if (!info.is_object())
      fail_tensor(name, "entry is " + json_type_name(info) + ", not an object");
    for (const auto& [key, _] : info.items()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        fail_tensor(name, "unexpected field '" + key + "'");
      }
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!info.contains(key)) fail_tensor(name, std::string("missing field '") + key + "'");
    }

    TensorView view;
    view.name = name;
    view.file = path.string();

    const json& dtype_json = info["dtype"];
    if (!dtype_json.is_string()) fail_tensor(name, "dtype is " + json_type_name(dtype_json));
    const std::string dtype_str = dtype_json.get<std::string>();
    if (!dtype_from_name(dtype_str, view.dtype)) {
      fail_tensor(name, "unsupported dtype '" + dtype_str +
                            "' (supported: F32, F16, BF16, I8, U8, I32, I64)");
    }

    const json& shape = info["shape"];
    if (!shape.is_array())
      fail_tensor(name, "shape is " + json_type_name(shape) + ", not an array");
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const json& dim : shape) {
      std::uint64_t d = 0;
      if (!json_to_u64(dim, d) ||
          d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail_tensor(name,
                    "shape " + shape_string(shape) +
                        " has an entry that is not a non-negative 64-bit integer: " + detail::json_excerpt(dim));
      }
      view.shape.push_back(static_cast<std::int64_t>(d));
      overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
    }
    std::uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, dtype_size(view.dtype), &nbytes) ||
        nbytes > std::numeric_limits<std::size_t>::max()) {
      fail_tensor(name, "shape " + shape_string(shape) + " of " + dtype_str +
                            " overflows 64-bit byte counts");
    }

    const json& offsets = info["data_offsets"];
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    if (!offsets.is_array() || offsets.size() != 2 || !json_to_u64(offsets[0], begin) ||
        !json_to_u64(offsets[1], end)) {
      fail_tensor(name, "data_offsets " + detail::json_excerpt(offsets) +
                            " is not a pair of non-negative integers [begin, end]");
    }
    if (begin > end) {
      fail_tensor(name, "data_offsets begin " + std::to_string(begin) + " is after end " +
                            std::to_string(end));
    }
    if (end - begin != nbytes) {
      fail_tensor(name, "data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
                            shape_string(shape) + " of " + dtype_str + " needs " +
                            std::to_string(nbytes));
    }
    if (end > data_len) {
      fail_tensor(name, "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                            "] out of bounds: the data section has " + std::to_string(data_len) +
                            " bytes");
    }
    view.data = std::span<const std::byte>(base + data_start + begin, nbytes);
    entries.push_back({name, begin, end});
    tensors.emplace(name, std::move(view));
  }

  // The tensors must tile the data section exactly. Zero-sized tensors
  // (begin == end) may share an offset with their neighbours.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t cursor = 0;
  std::string previous;
  for (const Entry& e : entries) {
    if (e.begin > cursor) {
      fail_tensor(e.name, "gap in the data section: bytes [" + std::to_string(cursor) + ", " +
                              std::to_string(e.begin) + ") belong to no tensor");
    }
    if (e.begin < cursor) {
      fail_tensor(e.name, "data_offsets [" + std::to_string(e.begin) + ", " +
                              std::to_string(e.end) + "] overlap tensor '" + previous + "'");
    }
    cursor = e.end;
    previous = e.name;
  }
  if (cursor != data_len) {
    fail(std::to_string(data_len - cursor) + " trailing bytes after the last tensor's data");
  }
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->load();
  impl_ = std::move(impl);
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

namespace {
template <class ImplPtr>
const ImplPtr& checked(const ImplPtr& impl, const char* what) {
  if (!impl) throw InvalidArgument(std::string("use of a moved-from ") + what);
  return impl;
}
}  // namespace

const std::filesystem::path& SafetensorsFile::path() const {
  return checked(impl_, "SafetensorsFile")->path;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return checked(impl_, "SafetensorsFile")->tensors.contains(name);
}

const TensorView& SafetensorsFile::tensor(const std::string& name) const {
  const auto& impl = checked(impl_, "SafetensorsFile");
  const auto it = impl->tensors.find(name);
  if (it == impl->tensors.end()) {
    throw FormatError(impl->path.string() + ": no tensor named '" + name + "'");
  }
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  const auto& impl = checked(impl_, "SafetensorsFile");
  std::vector<std::string> out;
  out.reserve(impl->tensors.size());
  for (const auto& [name, _] : impl->tensors) out.push_back(name);
  return out;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return checked(impl_, "SafetensorsFile")->metadata;
}

// ---------------------------------------------------------------------------
// Checkpoint

struct Checkpoint::Impl {
  std::filesystem::path dir;
  std::vector<SafetensorsFile> files;
  std::map<std::string, const TensorView*> tensors;
  // A checkpoint over another reader's views: the views and what keeps their bytes alive.
  std::map<std::string, TensorView> own_views;
  std::shared_ptr<const void> owner;

  void load_single(const std::filesystem::path& file);
  void load_sharded(const std::filesystem::path& index_path);
};

void Checkpoint::Impl::load_single(const std::filesystem::path& file) {
  files.emplace_back(file);
  for (const auto& name : files.back().names()) tensors.emplace(name, &files.back().tensor(name));
}

namespace {

// A shard must be a plain file name in the checkpoint directory: no
// separators, no "." or "..", so the index cannot point outside it.
bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

}  // namespace

void Checkpoint::Impl::load_sharded(const std::filesystem::path& index_path) {
  const std::string index_name = index_path.string();
  const json index = detail::parse_strict_json<FormatError>(
      detail::read_bounded_file(index_path, detail::kMaxConfigJsonBytes), index_name);
  if (!index.is_object()) throw FormatError(index_name + ": not a JSON object");
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw FormatError(index_name + ": missing 'weight_map' object");
  }
  const json& weight_map = index["weight_map"];

  // Open each shard once, in a stable order.
  std::map<std::string, std::size_t> shard_index;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string()) {
      throw FormatError(index_name + ": tensor '" + tensor + "': shard is " +
                        json_type_name(shard) + ", not a file name");
    }
    const std::string shard_name = shard.get<std::string>();
    if (!is_plain_file_name(shard_name)) {
      throw FormatError(index_name + ": tensor '" + tensor + "': shard '" + shard_name +
                        "' is not a plain file name inside " + dir.string());
    }
    shard_index.emplace(shard_name, 0);
  }
  // `files` must not reallocate once views into it are taken.
  files.reserve(shard_index.size());
  for (auto& [shard_name, position] : shard_index) {
    const std::filesystem::path shard_path = dir / shard_name;
    std::error_code ec;
    const auto status = std::filesystem::status(shard_path, ec);
    if (!std::filesystem::exists(status)) {
      throw FormatError(index_name + ": shard '" + shard_name + "' does not exist in " +
                        dir.string());
    }
    if (!std::filesystem::is_regular_file(status)) {
      throw FormatError(index_name + ": shard '" + shard_name + "' in " + dir.string() + " is " +
                        (std::filesystem::is_directory(status) ? "a directory" : "not a regular file") +
                        ", expected a safetensors file");
    }
    position = files.size();
    files.emplace_back(shard_path);
  }

  // Every tensor in any shard, with the shard holding it; a name in two
  // shards is ambiguous.
  std::map<std::string, std::size_t> found;
  for (std::size_t i = 0; i < files.size(); ++i) {
    for (const auto& name : files[i].names()) {
      const auto [it, inserted] = found.emplace(name, i);
      if (!inserted) {
        throw FormatError(dir.string() + ": tensor '" + name +
                          "' is in two shards: " + files[it->second].path().filename().string() +
                          " and " + files[i].path().filename().string());
      }
    }
  }
  for (const auto& [tensor, shard] : weight_map.items()) {
    const std::size_t i = shard_index.at(shard.get<std::string>());
    if (!files[i].contains(tensor)) {
      throw FormatError(index_name + ": tensor '" + tensor + "' is listed in shard '" +
                        shard.get<std::string>() + "' but " + files[i].path().string() +
                        " does not contain it");
    }
    tensors.emplace(tensor, &files[i].tensor(tensor));
  }
  for (const auto& [name, i] : found) {
    if (!tensors.contains(name)) {
      throw FormatError(index_name + ": tensor '" + name + "' is in " + files[i].path().string() +
                        " but not listed in weight_map");
    }
  }
}

Checkpoint::Checkpoint(const std::filesystem::path& dir) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::error_code ec;
  const std::filesystem::path single = dir / "model.safetensors";
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  // As Hugging Face does: a single file wins over an index. Anything at
  // either path is read (and refused if it is a directory or a FIFO), never
  // reported as missing.
  if (detail::path_exists(single)) {
    impl->load_single(single);
  } else if (detail::path_exists(index)) {
    impl->load_sharded(index);
  } else {
    throw IoError(dir.string() +
                  ": no model.safetensors or model.safetensors.index.json in this directory");
  }
  impl_ = std::move(impl);
}

Checkpoint::Checkpoint(std::filesystem::path source, std::vector<TensorView> views,
                       std::shared_ptr<const void> owner) {
  auto impl = std::make_unique<Impl>();
  impl->dir = std::move(source);
  impl->owner = std::move(owner);
  for (TensorView& v : views) {
    std::string name = v.name;
    const auto [it, inserted] = impl->own_views.emplace(name, std::move(v));
    if (!inserted)
      throw InvalidArgument(impl->dir.string() + ": tensor '" + name + "' given twice");
    impl->tensors.emplace(name, &it->second);
  }
  impl_ = std::move(impl);
}

Checkpoint::~Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;

const std::filesystem::path& Checkpoint::dir() const { return checked(impl_, "Checkpoint")->dir; }

bool Checkpoint::contains(const std::string& name) const {
  return checked(impl_, "Checkpoint")->tensors.contains(name);
}

const TensorView& Checkpoint::tensor(const std::string& name) const {
  const auto& impl = checked(impl_, "Checkpoint");
  const auto it = impl->tensors.find(name);
  if (it == impl->tensors.end()) {
    throw FormatError(impl->dir.string() + ": checkpoint has no tensor named '" + name + "'");
  }
  return *it->second;
}

std::vector<std::string> Checkpoint::names() const {
  const auto& impl = checked(impl_, "Checkpoint");
  std::vector<std::string> out;
  out.reserve(impl->tensors.size());
  for (const auto& [name, _] : impl->tensors) out.push_back(name);
  return out;
}

// ---------------------------------------------------------------------------
// Writing

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  json header = json::object();
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    if (t.name == kMetadataKey) {
      throw InvalidArgument(file + ": '__metadata__' cannot be a tensor name");
    }
    if (!seen.insert(t.name).second) {
      throw InvalidArgument(file + ": tensor '" + t.name + "' given twice");
    }
    std::uint64_t numel = 1;
    for (const auto d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, static_cast<std::uint64_t>(d), &numel)) {
        throw InvalidArgument(file + ": tensor '" + t.name + "': invalid shape");
      }
    }
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, dtype_size(t.dtype), &nbytes) || nbytes != t.data.size()) {
      throw InvalidArgument(file + ": tensor '" + t.name + "': " + std::to_string(t.data.size()) +
                            " bytes of data do not match its shape and dtype");
    }
    header[t.name] = {{"dtype", std::string(safetensors_dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char length[8];
  std::uint64_t n = text.size();
  for (auto& byte : length) {
    byte = static_cast<unsigned char>(n & 0xffu);
    n >>= 8;
  }

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError(file + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorView& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.data.data()),
              static_cast<std::streamsize>(t.data.size()));
  }
  out.close();
  if (!out) throw IoError(file + ": write failed");
}

}  // namespace assistgen::io

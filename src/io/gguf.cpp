// GGUF reading: mmap + validation of the whole file (see io/gguf.hpp).
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64
// kv_count; kv_count pairs (string key, u32 type, value); tensor_count infos
// (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset); then
// padding to general.alignment and the data section. A string is a u64
// length and that many bytes; an array a u32 element type, a u64 count and
// the elements (arrays may nest).
//
// Every read goes through Cursor, which checks the bytes are in the file
// before touching them; every length is compared with the bytes left before
// anything is allocated or multiplied, and every product and sum is
// overflow-checked. These are the classes of llama.cpp's GGUF advisories
// (tests/unit/test_gguf.cpp has one test each): tensor and key counts that
// size allocations, string lengths past the file or wrapping `len + 1`,
// array lengths whose `n * size` wraps (nested arrays included), more than
// four dimensions, type ids past the type table, ne * type size wrapping
// (CVE-2025-53630 and the later 2^42 dimension), offsets off the expected
// place, and alignments that are zero, not a power of two or make the
// padding wrap.
#include "assistgen/io/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "assistgen/error.hpp"
#include "file_mapping.hpp"

namespace assistgen::io {

namespace {

constexpr std::uint64_t kDefaultAlignment = 32;
constexpr std::uint32_t kMaxDims = 4;               // GGML_MAX_DIMS
constexpr std::size_t kMaxTensorName = 63;          // GGML_MAX_NAME - 1
constexpr std::size_t kMaxKeyBytes = 65535;         // the GGUF spec's limit on keys
constexpr int kMaxArrayDepth = 8;                   // nested arrays; real files use 1
constexpr std::uint64_t kMaxAlignment = 1ull << 30;  // far above any real file (32)

struct TypeTraits {
  GgmlType type;
  std::string_view name;
  std::uint64_t block;  // elements per block
  std::uint64_t size;   // bytes per block
};

// ggml's type_traits: block size and bytes per block of each type.
constexpr TypeTraits kGgmlTypes[] = {
    {GgmlType::f32, "F32", 1, 4},          {GgmlType::f16, "F16", 1, 2},
    {GgmlType::q4_0, "Q4_0", 32, 18},      {GgmlType::q4_1, "Q4_1", 32, 20},
    {GgmlType::q5_0, "Q5_0", 32, 22},      {GgmlType::q5_1, "Q5_1", 32, 24},
    {GgmlType::q8_0, "Q8_0", 32, 34},      {GgmlType::q8_1, "Q8_1", 32, 36},
    {GgmlType::q2_k, "Q2_K", 256, 84},     {GgmlType::q3_k, "Q3_K", 256, 110},
    {GgmlType::q4_k, "Q4_K", 256, 144},    {GgmlType::q5_k, "Q5_K", 256, 176},
    {GgmlType::q6_k, "Q6_K", 256, 210},    {GgmlType::q8_k, "Q8_K", 256, 292},
    {GgmlType::iq2_xxs, "IQ2_XXS", 256, 66}, {GgmlType::iq2_xs, "IQ2_XS", 256, 74},
    {GgmlType::iq3_xxs, "IQ3_XXS", 256, 98}, {GgmlType::iq1_s, "IQ1_S", 256, 50},
    {GgmlType::iq4_nl, "IQ4_NL", 32, 18},  {GgmlType::iq3_s, "IQ3_S", 256, 110},
    {GgmlType::iq2_s, "IQ2_S", 256, 82},   {GgmlType::iq4_xs, "IQ4_XS", 256, 136},
    {GgmlType::i8, "I8", 1, 1},            {GgmlType::i16, "I16", 1, 2},
    {GgmlType::i32, "I32", 1, 4},          {GgmlType::i64, "I64", 1, 8},
    {GgmlType::f64, "F64", 1, 8},          {GgmlType::iq1_m, "IQ1_M", 256, 56},
    {GgmlType::bf16, "BF16", 1, 2},        {GgmlType::tq1_0, "TQ1_0", 256, 54},
    {GgmlType::tq2_0, "TQ2_0", 256, 66},   {GgmlType::mxfp4, "MXFP4", 32, 17},
};

const TypeTraits* ggml_traits(std::uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (static_cast<std::uint32_t>(t.type) == id) return &t;
  return nullptr;
}

constexpr std::string_view kValueTypeNames[] = {"UINT8", "INT8",  "UINT16", "INT16", "UINT32",
                                                "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
                                                "UINT64", "INT64", "FLOAT64"};

// Fixed size of a scalar value type; 0 for string and array.
std::uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
    default: return 0;
  }
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::u16: case GgufType::i16:
    case GgufType::u32: case GgufType::i32: case GgufType::u64: case GgufType::i64: return true;
    default: return false;
  }
}

// A name for error messages: printable ASCII kept, anything else as \xNN,
// long names cut, so that a hostile name cannot flood or garble a message.
std::string printable(std::string_view s) {
  std::string out;
  const std::size_t n = std::min<std::size_t>(s.size(), 200);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > n) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

template <class T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86/ARM little-endian hosts only (static_assert below)
  return v;
}
static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

// Bounds-checked sequential reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const std::byte* base, std::uint64_t size, const std::string& file)
      : base_(base), size_(size), file_(file) {}

  std::uint64_t pos() const { return pos_; }
  std::uint64_t left() const { return size_ - pos_; }
  const std::byte* at(std::uint64_t p) const { return base_ + p; }

  // `what` says what was being read, for the message when the file ends first.
  void need(std::uint64_t n, const std::string& what) const {
    if (n > left())
      throw FormatError(file_ + ": " + what + " needs " + std::to_string(n) + " bytes at offset " +
                        std::to_string(pos_) + " but the file has " + std::to_string(left()) +
                        " left (" + std::to_string(size_) + " bytes in all)");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    const T v = load_le<T>(base_ + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::span<const std::byte> take(std::uint64_t n, const std::string& what) {
    need(n, what);
    std::span<const std::byte> s(base_ + pos_, static_cast<std::size_t>(n));
    pos_ += n;
    return s;
  }
  // A GGUF string: u64 length then bytes. The length is checked against the
  // bytes left before anything is copied (no `len + 1` to wrap).
  std::string_view string(const std::string& what) {
    const auto len = read<std::uint64_t>(what + " length");
    if (len > left())
      throw FormatError(file_ + ": " + what + " has length " + std::to_string(len) +
                        ", past the end of the file (" + std::to_string(left()) + " bytes left)");
    const auto s = take(len, what);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

 private:
  const std::byte* base_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  const std::string& file_;
};

// Rounds `x` up to a multiple of the power of two `a`; false on overflow.
bool align_up(std::uint64_t x, std::uint64_t a, std::uint64_t& out) {
  std::uint64_t sum = 0;
  if (__builtin_add_overflow(x, a - 1, &sum)) return false;
  out = sum & ~(a - 1);
  return true;
}

}  // namespace

std::string ggml_type_name(GgmlType t) {
  if (const TypeTraits* tr = ggml_traits(static_cast<std::uint32_t>(t))) return std::string(tr->name);
  return "type " + std::to_string(static_cast<std::uint32_t>(t));
}

std::string gguf_type_name(GgufType t) {
  const auto i = static_cast<std::uint32_t>(t);
  if (i < std::size(kValueTypeNames)) return std::string(kValueTypeNames[i]);
  return "type " + std::to_string(i);
}

std::uint64_t GgufTensorInfo::numel() const {
  std::uint64_t n = 1;
  for (const auto d : ne) n *= d;  // checked at open
  return n;
}

struct GgufFile::Impl {
  std::filesystem::path path;
  std::string file;  // path as text, for messages
  detail::FileMapping mapping;
  std::uint32_t version = 0;
  std::uint64_t alignment = kDefaultAlignment;
  std::uint64_t data_offset = 0;
  std::vector<std::string> keys;
  std::map<std::string, GgufValue, std::less<>> values;
  std::vector<GgufTensorInfo> tensors;
  std::map<std::string, std::size_t, std::less<>> tensor_index;

  void load();
  void read_value(Cursor& c, GgufType type, const std::string& key, int depth, GgufValue* out);
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(file + ": " + what); }
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const {
    throw FormatError(file + ": key '" + printable(key) + "': " + what);
  }
  [[noreturn]] void fail_tensor(std::string_view name, const std::string& what) const {
    throw FormatError(file + ": tensor '" + printable(name) + "': " + what);
  }
  const GgufValue& value(std::string_view key) const {
    const auto it = values.find(key);
    if (it == values.end()) fail_key(key, "missing");
    return it->second;
  }
};

// Reads (and validates) one value of `type`; `out` receives the view when
// non-null. Arrays recurse at most kMaxArrayDepth deep.
void GgufFile::Impl::read_value(Cursor& c, GgufType type, const std::string& key, int depth,
                                GgufValue* out) {
  const std::string what = "value of key '" + printable(key) + "'";
  const std::uint64_t start = c.pos();
  GgufValue v;
  v.type = type;
  if (const std::uint64_t size = scalar_size(type); size != 0) {
    c.take(size, what);
    if (type == GgufType::boolean) {
      const auto b = std::to_integer<unsigned>(*c.at(start));
      if (b > 1) fail_key(key, "BOOL value is " + std::to_string(b) + ", not 0 or 1");
    }
  } else if (type == GgufType::string) {
    c.string(what);
  } else if (type == GgufType::array) {
    if (depth >= kMaxArrayDepth)
      fail_key(key, "arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
    const auto raw_elem = c.read<std::uint32_t>(what + " element type");
    if (raw_elem > static_cast<std::uint32_t>(GgufType::f64))
      fail_key(key, "array element type " + std::to_string(raw_elem) + " is not a GGUF value type");
    const auto elem = static_cast<GgufType>(raw_elem);
    const auto count = c.read<std::uint64_t>(what + " array length");
    v.element_type = elem;
    v.count = count;
    const std::uint64_t elem_start = c.pos();
    if (const std::uint64_t size = scalar_size(elem); size != 0) {
      std::uint64_t bytes = 0;
      if (__builtin_mul_overflow(count, size, &bytes) || bytes > c.left())
        fail_key(key, "array of " + std::to_string(count) + " " + gguf_type_name(elem) +
                          " runs past the end of the file (" + std::to_string(c.left()) +
                          " bytes left)");
      c.take(bytes, what);
      if (elem == GgufType::boolean)
        for (std::uint64_t i = 0; i < count; ++i)
          if (std::to_integer<unsigned>(*c.at(elem_start + i)) > 1)
            fail_key(key, "BOOL array element " + std::to_string(i) + " is not 0 or 1");
    } else {
      // Each string takes at least its 8-byte length, each nested array 12
      // bytes: a count the remaining bytes cannot hold is refused at once.
      const std::uint64_t min_size = elem == GgufType::string ? 8 : 12;
      if (count > c.left() / min_size)
        fail_key(key, "array of " + std::to_string(count) + " " + gguf_type_name(elem) +
                          " cannot fit in the " + std::to_string(c.left()) + " bytes left");
      for (std::uint64_t i = 0; i < count; ++i) read_value(c, elem, key, depth + 1, nullptr);
    }
    if (out) {
      v.bytes = std::span<const std::byte>(c.at(elem_start), static_cast<std::size_t>(c.pos() - elem_start));
      *out = v;
    }
    return;
  } else {
    fail_key(key, "value type " + std::to_string(static_cast<std::uint32_t>(type)) +
                      " is not a GGUF value type");
  }
  if (out) {
    v.bytes = std::span<const std::byte>(c.at(start), static_cast<std::size_t>(c.pos() - start));
    *out = v;
  }
}

void GgufFile::Impl::load() {
  file = path.string();
  mapping.map(path, "a GGUF file");
  const std::uint64_t file_size = mapping.size();
  if (file_size < 24)
    fail("file is " + std::to_string(file_size) +
         " bytes, shorter than a GGUF header (magic, version, tensor and key counts: 24 bytes)");
  Cursor c(mapping.data(), file_size, file);
  const auto magic = c.take(4, "magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0)
    fail("not a GGUF file (the first 4 bytes are not \"GGUF\")");
  version = c.read<std::uint32_t>("version");
  if (version != 2 && version != 3) {
    if (version == 1)
      throw UnsupportedError(file + ": GGUF version 1 is not supported (only 2 and 3)");
    if (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3)
      throw UnsupportedError(file + ": a big-endian GGUF file; only little-endian files are supported");
    throw UnsupportedError(file + ": GGUF version " + std::to_string(version) +
                           " is not supported (only 2 and 3)");
  }
  const auto tensor_count = c.read<std::uint64_t>("tensor count");
  const auto kv_count = c.read<std::uint64_t>("metadata key count");
  // Bounds before any allocation: a key takes at least 8 + 1 + 4 + 1 bytes,
  // a tensor info 8 + 1 + 4 + 4 + 8.
  if (kv_count > c.left() / 14)
    fail("metadata key count " + std::to_string(kv_count) + " cannot fit in the file (" +
         std::to_string(file_size) + " bytes)");
  if (tensor_count > c.left() / 25)
    fail("tensor count " + std::to_string(tensor_count) + " cannot fit in the file (" +
         std::to_string(file_size) + " bytes)");

  for (std::uint64_t i = 0; i < kv_count; ++i) {
    const std::string where = "metadata key " + std::to_string(i);
    const std::string_view key_view = c.string(where);
    std::string key(key_view);
    if (key.empty()) fail(where + " is empty");
    if (key.size() > kMaxKeyBytes)
      fail(where + " is " + std::to_string(key.size()) + " bytes long, past GGUF's limit of 65535");
    if (values.contains(key)) fail_key(key, "appears twice");
    const auto raw_type = c.read<std::uint32_t>("type of key '" + printable(key) + "'");
    GgufValue v;
    read_value(c, static_cast<GgufType>(raw_type), key, 0, &v);
    keys.push_back(key);
    values.emplace(std::move(key), v);
  }

  if (const auto it = values.find(std::string_view("general.alignment")); it != values.end()) {
    const GgufValue& v = it->second;
    if (v.type != GgufType::u32)
      fail_key("general.alignment", "is " + gguf_type_name(v.type) + ", expected UINT32");
    alignment = load_le<std::uint32_t>(v.bytes.data());
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kMaxAlignment)
      fail_key("general.alignment", std::to_string(alignment) +
                                        " is not a power of two between 1 and 2^30");
  }

  tensors.reserve(static_cast<std::size_t>(tensor_count));
  std::vector<std::uint64_t> sizes;
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    const std::string_view name = c.string("name of tensor " + std::to_string(i));
    if (name.empty()) fail("tensor " + std::to_string(i) + " has an empty name");
    if (name.size() > kMaxTensorName)
      fail_tensor(name, "name is " + std::to_string(name.size()) + " bytes, more than ggml's " +
                            std::to_string(kMaxTensorName));
    t.name = std::string(name);
    if (tensor_index.contains(t.name)) fail_tensor(name, "appears twice");
    const std::string what = "tensor '" + printable(name) + "'";
    const auto n_dims = c.read<std::uint32_t>(what + " dimension count");
    if (n_dims > kMaxDims)
      fail_tensor(name, "has " + std::to_string(n_dims) + " dimensions, more than ggml's " +
                            std::to_string(kMaxDims));
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = c.read<std::uint64_t>(what + " dimension");
      if (ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail_tensor(name, "dimension " + std::to_string(d) + " is " + std::to_string(ne) +
                              ", past INT64_MAX");
      t.ne.push_back(ne);
      if (__builtin_mul_overflow(numel, ne, &numel) ||
          numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail_tensor(name, "element count overflows 63 bits");
    }
    const auto raw_type = c.read<std::uint32_t>(what + " type");
    const TypeTraits* traits = ggml_traits(raw_type);
    if (traits == nullptr)
      throw UnsupportedError(file + ": tensor '" + printable(name) + "': ggml type " +
                             std::to_string(raw_type) + " is not a type this reader knows");
    t.type = traits->type;
    if (!t.ne.empty() && t.ne[0] % traits->block != 0)
      fail_tensor(name, "first dimension " + std::to_string(t.ne[0]) + " is not a multiple of " +
                            std::string(traits->name) + "'s block size " +
                            std::to_string(traits->block));
    if (t.ne.empty() && traits->block != 1)
      fail_tensor(name, "a scalar of block type " + std::string(traits->name));
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel / traits->block, traits->size, &nbytes))
      fail_tensor(name, "byte size of " + std::to_string(numel) + " " + std::string(traits->name) +
                            " elements overflows 64 bits");
    t.offset = c.read<std::uint64_t>(what + " offset");
    for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) t.shape.push_back(static_cast<std::int64_t>(*it));
    tensor_index.emplace(t.name, tensors.size());
    tensors.push_back(std::move(t));
    sizes.push_back(nbytes);  // `data` is set below, once the data section is known
  }

  if (!align_up(c.pos(), alignment, data_offset)) fail("data section offset overflows");
  // Tensors sit where llama.cpp's writer puts them: each at the sum of the
  // padded sizes before it. Their bytes must be in the file; past the padded
  // end of the last one there may be nothing.
  std::uint64_t expected = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    GgufTensorInfo& t = tensors[i];
    const std::uint64_t nbytes = sizes[i];
    if (t.offset != expected)
      fail_tensor(t.name, "offset " + std::to_string(t.offset) + " is not where the tensors before it end (" +
                              std::to_string(expected) + ", with alignment " + std::to_string(alignment) + ")");
    std::uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(data_offset, t.offset, &begin) ||
        __builtin_add_overflow(begin, nbytes, &end) || end > file_size)
      fail_tensor(t.name, "data [" + std::to_string(t.offset) + ", +" + std::to_string(nbytes) +
                              ") runs past the end of the file (data section of " +
                              std::to_string(file_size > data_offset ? file_size - data_offset : 0) +
                              " bytes)");
    t.data = std::span<const std::byte>(mapping.data() + begin, static_cast<std::size_t>(nbytes));
    std::uint64_t padded = 0;
    if (!align_up(nbytes, alignment, padded) || __builtin_add_overflow(expected, padded, &expected))
      fail_tensor(t.name, "padded size overflows 64 bits");
  }
  std::uint64_t data_end = 0;
  if (__builtin_add_overflow(data_offset, expected, &data_end)) fail("data section size overflows");
  if (!tensors.empty() && file_size > data_end)
    fail(std::to_string(file_size - data_end) + " trailing bytes after the last tensor's data");
  if (tensors.empty() && file_size > data_offset)
    fail(std::to_string(file_size - data_offset) + " trailing bytes after the header, but no tensors");
}

// ---------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(const std::filesystem::path& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->load();
  impl_ = std::move(impl);
}

GgufFile::~GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;

const GgufFile::Impl& GgufFile::impl() const {
  if (!impl_) throw InvalidArgument("use of a moved-from GgufFile");
  return *impl_;
}

namespace {

// Integer value `i` of `count` integers of `type` at `p` (validated bytes).
bool integer_at(const std::byte* p, GgufType type, std::int64_t& s, std::uint64_t& u) {
  switch (type) {
    case GgufType::u8: u = load_le<std::uint8_t>(p); s = static_cast<std::int64_t>(u); return true;
    case GgufType::u16: u = load_le<std::uint16_t>(p); s = static_cast<std::int64_t>(u); return true;
    case GgufType::u32: u = load_le<std::uint32_t>(p); s = static_cast<std::int64_t>(u); return true;
    case GgufType::u64:
      u = load_le<std::uint64_t>(p);
      s = static_cast<std::int64_t>(u);
      return u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    case GgufType::i8: s = load_le<std::int8_t>(p); break;
    case GgufType::i16: s = load_le<std::int16_t>(p); break;
    case GgufType::i32: s = load_le<std::int32_t>(p); break;
    case GgufType::i64: s = load_le<std::int64_t>(p); break;
    default: return false;
  }
  u = static_cast<std::uint64_t>(s);
  return true;
}
}  // namespace

const std::filesystem::path& GgufFile::path() const { return impl().path; }
std::uint32_t GgufFile::version() const { return impl().version; }
std::uint64_t GgufFile::alignment() const { return impl().alignment; }
std::uint64_t GgufFile::data_offset() const { return impl().data_offset; }
std::vector<std::string> GgufFile::keys() const { return impl().keys; }
bool GgufFile::contains(std::string_view key) const { return impl().values.contains(key); }
const GgufValue& GgufFile::value(std::string_view key) const { return impl().value(key); }

std::uint64_t GgufFile::get_uint(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  std::int64_t s = 0;
  std::uint64_t u = 0;
  if (!is_integer(v.type)) im.fail_key(key, "is " + gguf_type_name(v.type) + ", expected an integer");
  const bool fits = integer_at(v.bytes.data(), v.type, s, u);
  if (v.type != GgufType::u64 && (!fits || s < 0))
    im.fail_key(key, "is " + std::to_string(s) + ", expected a non-negative integer");
  return v.type == GgufType::u64 ? load_le<std::uint64_t>(v.bytes.data()) : u;
}

std::int64_t GgufFile::get_int(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  std::int64_t s = 0;
  std::uint64_t u = 0;
  if (!is_integer(v.type)) im.fail_key(key, "is " + gguf_type_name(v.type) + ", expected an integer");
  if (!integer_at(v.bytes.data(), v.type, s, u))
    im.fail_key(key, "is " + std::to_string(u) + ", past INT64_MAX");
  return s;
}

double GgufFile::get_float(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type == GgufType::f32) return load_le<float>(v.bytes.data());
  if (v.type == GgufType::f64) return load_le<double>(v.bytes.data());
  im.fail_key(key, "is " + gguf_type_name(v.type) + ", expected FLOAT32 or FLOAT64");
}

bool GgufFile::get_bool(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type != GgufType::boolean) im.fail_key(key, "is " + gguf_type_name(v.type) + ", expected BOOL");
  return std::to_integer<unsigned>(v.bytes[0]) != 0;
}

std::string GgufFile::get_string(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type != GgufType::string) im.fail_key(key, "is " + gguf_type_name(v.type) + ", expected STRING");
  return std::string(reinterpret_cast<const char*>(v.bytes.data()) + 8, v.bytes.size() - 8);
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type != GgufType::array || v.element_type != GgufType::string)
    im.fail_key(key, "is " + gguf_type_name(v.type) +
                           (v.type == GgufType::array ? " of " + gguf_type_name(v.element_type) : "") +
                           ", expected an ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(v.count));
  const std::byte* p = v.bytes.data();
  for (std::uint64_t i = 0; i < v.count; ++i) {  // lengths validated at open
    const auto len = load_le<std::uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(len));
    p += 8 + len;
  }
  return out;
}

std::vector<std::int64_t> GgufFile::get_int_array(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type != GgufType::array || !is_integer(v.element_type))
    im.fail_key(key, "is " + gguf_type_name(v.type) +
                           (v.type == GgufType::array ? " of " + gguf_type_name(v.element_type) : "") +
                           ", expected an ARRAY of integers");
  const std::uint64_t size = scalar_size(v.element_type);
  std::vector<std::int64_t> out(static_cast<std::size_t>(v.count));
  for (std::uint64_t i = 0; i < v.count; ++i) {
    std::uint64_t u = 0;
    if (!integer_at(v.bytes.data() + i * size, v.element_type, out[i], u))
      im.fail_key(key, "element " + std::to_string(i) + " is " + std::to_string(u) + ", past INT64_MAX");
  }
  return out;
}

std::vector<double> GgufFile::get_float_array(std::string_view key) const {
  const Impl& im = impl();
  const GgufValue& v = im.value(key);
  if (v.type != GgufType::array || (v.element_type != GgufType::f32 && v.element_type != GgufType::f64))
    im.fail_key(key, "is " + gguf_type_name(v.type) +
                           (v.type == GgufType::array ? " of " + gguf_type_name(v.element_type) : "") +
                           ", expected an ARRAY of FLOAT32 or FLOAT64");
  std::vector<double> out(static_cast<std::size_t>(v.count));
  for (std::uint64_t i = 0; i < v.count; ++i)
    out[i] = v.element_type == GgufType::f32 ? load_le<float>(v.bytes.data() + 4 * i)
                                              : load_le<double>(v.bytes.data() + 8 * i);
  return out;
}

const std::vector<GgufTensorInfo>& GgufFile::tensors() const { return impl().tensors; }

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const Impl& im = impl();
  const auto it = im.tensor_index.find(name);
  return it == im.tensor_index.end() ? nullptr : &im.tensors[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (t == nullptr) impl().fail_tensor(name, "not in the file");
  return *t;
}

bool is_gguf_path(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return false;
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (ext == ".gguf") return true;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace assistgen::io

// Read-only access to GGUF files (llama.cpp's model format, versions 2 and
// 3) and model loading from them. GgufFile memory-maps one file and validates
// the whole layout before handing out views: every count, string length,
// array length (nested arrays included), dimension and tensor extent is
// overflow-checked and bounded by the file size; tensors must sit where
// llama.cpp puts them (each at the running sum of the previous tensors' sizes,
// padded to general.alignment). A violation is a FormatError naming the file
// and the key or tensor at fault; a tensor type this reader does not know is
// an UnsupportedError naming the tensor and the type.
//
// load_gguf_model() turns a GGUF file (general.architecture llama, with
// mistral's sliding window when llama.attention.sliding_window is set, qwen2
// or gpt2) into a ModelConfig and an io::Checkpoint holding the tensors under
// their Hugging Face names, so the CPU backend loads it as it loads a model
// directory: F32, F16 and BF16 tensors as stored; Q8_0, Q5_0, Q4_0, Q4_K and Q6_K
// decoded to floats exactly as ggml does and also offered in their
// group-quantized form (io/quantized.hpp), which the CPU backend keeps as
// stored; and the Q/K rows llama.cpp's converter permutes for its rotary
// layout put back in Hugging Face's order (docs/gguf.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/model_config.hpp"
#include "assistgen/io/safetensors.hpp"

namespace assistgen::io {

/// ggml tensor types, numbered as ggml.h's `enum ggml_type`.
enum class GgmlType : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22,
  iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
  tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

/// ggml's name of a type ("Q8_0"), or "type N" for a number ggml does not define.
std::string ggml_type_name(GgmlType t);

/// Metadata value types of GGUF.
enum class GgufType : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

/// GGUF's name of a value type ("UINT32"), or "type N".
std::string gguf_type_name(GgufType t);

/// One metadata value: a view of its encoded bytes in the file (after the
/// type tag), already validated. Valid while its file is open.
struct GgufValue {
  GgufType type = GgufType::u8;          ///< the value's type
  GgufType element_type = GgufType::u8;  ///< arrays: the elements' type
  std::uint64_t count = 0;               ///< arrays: the number of elements
  std::span<const std::byte> bytes;      ///< the encoded value (arrays: the elements)
};

/// One tensor of a GGUF file. Valid while its file is open.
struct GgufTensorInfo {
  std::string name;                 ///< e.g. "blk.0.attn_q.weight"
  GgmlType type = GgmlType::f32;    ///< storage type
  std::vector<std::uint64_t> ne;    ///< ggml's dimensions, innermost (contiguous) first
  std::vector<std::int64_t> shape;  ///< the same reversed: outermost first, as TensorView::shape
  std::uint64_t offset = 0;         ///< from the start of the data section
  std::span<const std::byte> data;  ///< exactly the tensor's bytes
  std::uint64_t numel() const;      ///< product of ne (1 for no dimensions)
};

/// One memory-mapped GGUF file (v2 or v3, little-endian). Move-only; views
/// stay valid when it is moved. A moved-from object throws InvalidArgument.
class GgufFile {
 public:
  /// Opens and validates `path`. Throws IoError, FormatError, or
  /// UnsupportedError (another version, a big-endian file, an unknown tensor type).
  explicit GgufFile(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(GgufFile&&) noexcept;             ///< Moves the mapping; views stay valid.
  GgufFile& operator=(GgufFile&&) noexcept;  ///< Moves the mapping; views stay valid.
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const;  ///< the path it was opened from
  std::uint32_t version() const;              ///< 2 or 3
  std::uint64_t alignment() const;            ///< general.alignment, else 32
  std::uint64_t data_offset() const;          ///< where the data section starts in the file

  /// Metadata keys, in file order.
  std::vector<std::string> keys() const;
  bool contains(std::string_view key) const;  ///< whether metadata key `key` exists
  /// The value of `key`; FormatError naming the file and the key when absent.
  const GgufValue& value(std::string_view key) const;

  // Typed getters: FormatError naming the file and the key when the key is
  // absent or of another type.
  /// Any integer type; FormatError when negative.
  std::uint64_t get_uint(std::string_view key) const;
  /// Any integer type; FormatError when a UINT64 exceeds INT64_MAX.
  std::int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;  ///< FLOAT32 or FLOAT64
  bool get_bool(std::string_view key) const;     ///< BOOL
  std::string get_string(std::string_view key) const;  ///< STRING
  /// ARRAY of STRING.
  std::vector<std::string> get_string_array(std::string_view key) const;
  /// ARRAY of any integer type (UINT64 values past INT64_MAX are a FormatError).
  std::vector<std::int64_t> get_int_array(std::string_view key) const;
  /// ARRAY of FLOAT32 or FLOAT64.
  std::vector<double> get_float_array(std::string_view key) const;

  /// The tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const;
  /// The tensor called `name`, or nullptr.
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  /// The tensor called `name`; FormatError naming the file and the tensor when absent.
  const GgufTensorInfo& tensor(std::string_view name) const;

 private:
  struct Impl;
  const Impl& impl() const;  // throws InvalidArgument when moved from
  std::unique_ptr<Impl> impl_;
};

/// Whether `path` names a GGUF file rather than a model directory: anything
/// but a directory whose name ends in ".gguf" (any case), or a regular file
/// that starts with the magic "GGUF".
bool is_gguf_path(const std::filesystem::path& path);

/// A GGUF model ready for a backend: its configuration and its weights.
struct GgufModel {
  ModelConfig config;  ///< from general.architecture and the keys under its name
  /// Every tensor of the file under its Hugging Face name (unknown names kept
  /// as they are); F32/F16/BF16 as stored, the block-quantized types decoded
  /// to floats as ggml does (dtype f32) with their group form
  /// (TensorView::quantized), permuted Q/K rows in the Hugging Face order.
  Checkpoint weights;
};

/// Opens a GGUF model file of the Llama family or gpt2. Tensor types other
/// than F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K and Q6_K are an UnsupportedError
/// naming the tensor and the type; so is another architecture (naming the
/// supported ones), partial rotary dimensions, RoPE scaling other than
/// linear, or llama3's rope_freqs tensor. A missing or mistyped key is a
/// FormatError naming the file and the key; inconsistent values a ConfigError.
GgufModel load_gguf_model(const std::filesystem::path& path);

}  // namespace assistgen::io

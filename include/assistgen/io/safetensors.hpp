// Read-only access to safetensors checkpoints. SafetensorsFile memory-maps one
// file and validates the whole format before handing out views; Checkpoint
// opens a model directory (one model.safetensors or a sharded set through
// model.safetensors.index.json). Every violation is a FormatError naming the
// file and, where there is one, the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "assistgen/io/quantized.hpp"
#include "assistgen/types.hpp"

namespace assistgen::io {

/// A view of one stored tensor. Valid while its file is open.
struct TensorView {
  std::string name;                  ///< tensor name, e.g. "model.norm.weight"
  /// Stored element type; for a decoded tensor (below), a type that holds its
  /// values exactly (f32 for GGUF's Q8_0, bf16 for a reordered BF16 tensor).
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;   ///< dimensions, outermost first
  /// Exactly numel * dtype_size bytes, row-major; for a decoded tensor, the
  /// bytes as stored (a block-quantized encoding, or rows in another order).
  std::span<const std::byte> data;
  std::string file;                 ///< path of the file holding it (for errors)
  /// Set for a tensor whose stored bytes are not plain row-major `dtype`
  /// elements (GGUF's block-quantized types; rows that llama.cpp's converter
  /// permuted): writes its numel() values, row-major, into a buffer of
  /// exactly numel() floats. Only to_float() and to_finite_float() read such
  /// a tensor's values. Empty for safetensors.
  std::function<void(std::span<float>)> decode;
  /// Set for the GGUF block-quantized types the CPU backend computes in
  /// their own form (Q4_0, Q4_K, Q6_K): the stored codes, scales and mins,
  /// rows in the order decode() writes them (io/quantized.hpp). Empty otherwise.
  std::function<GroupQuantized()> quantized;

  /// Elements: the product of `shape` (1 for a scalar).
  std::size_t numel() const;
  /// Converts F32/F16/BF16 elements (or a decoded tensor) to float (throws
  /// FormatError for other dtypes).
  std::vector<float> to_float() const;
  /// Same, into a caller buffer of exactly numel() floats.
  void to_float(std::span<float> out) const;
  /// to_float(), then the loaders' policy for weights: every value must be
  /// finite. A NaN or an infinity is a FormatError naming the file, the
  /// tensor, the element's index and its value, so that a corrupt weight is
  /// found at load rather than as NaN logits, a wrong argmax or an int8
  /// packing of NaN.
  std::vector<float> to_finite_float() const;
};

/// One memory-mapped .safetensors file. Move-only; views stay valid when the
/// object is moved (the mapping does not move). A moved-from object throws
/// InvalidArgument on use.
class SafetensorsFile {
 public:
  /// Opens and validates `path`. Throws IoError / FormatError.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;             ///< Moves the mapping; views stay valid.
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;  ///< Moves the mapping; views stay valid.
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// The path it was opened from.
  const std::filesystem::path& path() const;
  /// Whether the file holds a tensor called `name`.
  bool contains(const std::string& name) const;
  /// Throws FormatError naming the file and the tensor when absent.
  const TensorView& tensor(const std::string& name) const;
  std::vector<std::string> names() const;  ///< sorted
  /// The header's `__metadata__` map (empty when absent).
  const std::map<std::string, std::string>& metadata() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The weights of a model directory: model.safetensors, or the shards listed
/// by model.safetensors.index.json. The index and the shards must agree:
/// every listed tensor is in the shard named for it, no tensor is in two
/// shards or in a shard without being listed, and shard names are plain file
/// names inside the directory. When both files exist, model.safetensors wins,
/// as in Hugging Face transformers. Move-only; views survive moves.
class Checkpoint {
 public:
  /// Opens and validates the weights of model directory `dir`. Throws IoError / FormatError.
  explicit Checkpoint(const std::filesystem::path& dir);
  /// A checkpoint over tensors another reader holds (a GGUF file,
  /// io/gguf.hpp): the views stay valid while `owner` lives, and the
  /// checkpoint keeps `owner`. `source` names it in errors (dir() returns
  /// it). Throws InvalidArgument for a name given twice.
  Checkpoint(std::filesystem::path source, std::vector<TensorView> views,
             std::shared_ptr<const void> owner);
  ~Checkpoint();
  Checkpoint(Checkpoint&&) noexcept;             ///< Moves the mappings; views stay valid.
  Checkpoint& operator=(Checkpoint&&) noexcept;  ///< Moves the mappings; views stay valid.

  /// The model directory (or the `source` of a checkpoint over views).
  const std::filesystem::path& dir() const;
  /// Whether any file of the checkpoint holds a tensor called `name`.
  bool contains(const std::string& name) const;
  /// Throws FormatError naming the directory and the tensor when absent.
  const TensorView& tensor(const std::string& name) const;
  std::vector<std::string> names() const;  ///< sorted

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// IEEE binary16 bits to float (exact; subnormals, infinities and NaN kept).
float f16_to_float(std::uint16_t bits);
/// bfloat16 bits (the high half of a float) to float (exact).
float bf16_to_float(std::uint16_t bits);
/// float to binary16, rounding to nearest even; overflow gives infinity, NaN stays NaN.
std::uint16_t float_to_f16(float value);
/// float to bfloat16, rounding to nearest even; NaN stays NaN.
std::uint16_t float_to_bf16(float value);

/// Writes tensors as one .safetensors file (used by tests and tools). Data of
/// each tensor must match its shape and dtype; names must be unique. The
/// header is padded with spaces to a multiple of 8 bytes, as the reference
/// implementation does, and data follow in the order given. Throws
/// InvalidArgument for bad tensors, IoError when the file cannot be written.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace assistgen::io

// Basic vocabulary types shared by every layer: token ids, element types and
// the Logits matrix that backends return.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace assistgen {

/// A token id. Signed 32-bit, as in Hugging Face and llama.cpp.
using Token = std::int32_t;

/// Element types of stored weights. i4 is only a load option (4-bit
/// group-quantized weights, cpu::LoadOptions::dtype), never a stored tensor's type.
/// f8_e4m3: OCP FP8 E4M3 (finite, max 448), stored one byte per element; only
/// the HPU backend's fp8 weights use it.
enum class DType { f32, f16, bf16, i8, u8, i32, i64, i4, f8_e4m3 };

/// Size in bytes of one element of `t`.
constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i8: return 1;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::i4:
      return 1;  // two codes per byte; no tensor is stored as i4
    case DType::f8_e4m3:
      return 1;
  }
  return 0;
}

/// Lower-case name of `t` ("f32", "bf16", ...).
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::i4:
      return "i4";
    case DType::f8_e4m3:
      return "f8_e4m3";
  }
  return "?";
}

/// Row-major float matrix of logits, one row per appended position, one
/// column per vocabulary entry. Owns its storage; resizing reuses capacity.
class Logits {
 public:
  Logits() = default;
  /// A rows x cols matrix of zeros.
  Logits(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols), data_(rows * cols) {}

  /// Rows: one per appended position.
  std::size_t rows() const { return rows_; }
  /// Columns: the vocabulary size of the model that made it.
  std::size_t cols() const { return cols_; }
  /// The rows() * cols() values, row-major.
  float* data() { return data_.data(); }
  /// The rows() * cols() values, row-major.
  const float* data() const { return data_.data(); }

  /// Row `i` (no bounds check).
  std::span<float> row(std::size_t i) { return {data_.data() + i * cols_, cols_}; }
  /// Row `i` (no bounds check).
  std::span<const float> row(std::size_t i) const { return {data_.data() + i * cols_, cols_}; }

  /// Reshape to rows x cols; keeps the allocation when it is large enough.
  void resize(std::size_t rows, std::size_t cols) {
    rows_ = rows;
    cols_ = cols;
    data_.resize(rows * cols);
  }

 private:
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
  std::vector<float> data_;
};

/// How far a model load has got (cpu::LoadOptions::on_progress,
/// LoadModelOptions::on_progress): the checkpoint's tensors read, converted
/// and packed so far, and their bytes in the checkpoint.
struct LoadProgress {
  std::size_t tensors_done = 0;   ///< tensors read and packed
  std::size_t tensors_total = 0;  ///< tensors in the checkpoint
  std::size_t bytes_done = 0;     ///< checkpoint bytes of the tensors done
  std::size_t bytes_total = 0;    ///< checkpoint bytes of every tensor
};

}  // namespace assistgen

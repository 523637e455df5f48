// Group-quantized weights: the common form of GGUF's block-quantized types
// (Q4_0, Q5_0, Q4_K, Q6_K, Q8_0) and of the int4 quantization assistgen applies to
// Hugging Face checkpoints at load (LoadOptions::dtype = i4). The CPU backend
// packs this form into its group-quantized kernel layout without rounding
// anything again, so a GGUF file's weights are computed with exactly the
// values the file stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace assistgen::io {

/// A [rows, cols] matrix as unsigned integer codes and, per group of `group`
/// consecutive columns of a row, a scale and a min:
///   w[r, c] = scale[r, c / group] * q[r, c] - min[r, c / group]
/// (real-valued; GGUF's dequantizers round that expression to float). The
/// last group of a row is shorter when cols % group != 0.
struct GroupQuantized {
  std::size_t rows = 0;         ///< rows (outputs)
  std::size_t cols = 0;         ///< columns (inputs)
  std::size_t group = 32;       ///< columns per group (16 or 32)
  unsigned bits = 4;            ///< 4 (codes < 16) or 8 (codes < 256)
  std::vector<std::uint8_t> q;  ///< [rows, cols] codes
  std::vector<float> scale;     ///< [rows, groups_per_row()]
  std::vector<float> min;       ///< [rows, groups_per_row()]

  /// Optional second level (GGUF's K types; 0: none): the groups of a row
  /// come in superblocks of `super` consecutive groups, each with a float
  /// super-scale and super-min, and each group's scale and min is a small
  /// signed integer code times them:
  ///   scale[r, g] = super_scale[r, g / super] * scale_code[r, g]
  ///   min[r, g]   = super_min[r, g / super] * min_code[r, g]
  /// (Q4_K: d, dmin and the 6-bit sub-block values; Q6_K: d, 32 d and the
  /// int8 sub-block scale for both). `scale` and `min` always hold the
  /// products, so the second level is only a denser way to store them.
  std::size_t super = 0;
  std::vector<std::int8_t> scale_code;  ///< [rows, groups_per_row()] when super > 0
  std::vector<std::int8_t> min_code;    ///< [rows, groups_per_row()] when super > 0
  std::vector<float> super_scale;       ///< [rows, supers_per_row()] when super > 0
  std::vector<float> super_min;         ///< [rows, supers_per_row()] when super > 0

  /// Groups in a row: cols / group, rounded up.
  std::size_t groups_per_row() const { return group ? (cols + group - 1) / group : 0; }
  /// Superblocks in a row: groups_per_row() / super, rounded up (0 without).
  std::size_t supers_per_row() const { return super ? (groups_per_row() + super - 1) / super : 0; }
  /// Whether super > 0 and every scale and min is exactly the float product
  /// of its code and super value (so either form gives the same floats).
  bool two_level_exact() const;
  /// The rows `rows` of this matrix, in that order (each < this->rows), with
  /// every per-row array (codes, scales, mins and the second level).
  GroupQuantized take_rows(std::span<const std::size_t> rows) const;
  /// The real value of w[r, c] rounded once to float (tests and references).
  float value(std::size_t r, std::size_t c) const;
  /// Throws InvalidArgument naming `what` when sizes, group or bits are inconsistent,
  /// a code does not fit `bits`, a scale or min is not finite, or the second
  /// level's sizes do not match or a super value is not finite.
  void check(const std::string& what) const;
};

/// Rows of several matrices with the same number of columns, stacked in
/// order, in one form: the widest `bits` and the smallest `group` of the
/// parts (a group of 32 split into two of 16 keeps its scale and min), so
/// every value is kept exactly. The second level is kept when every part
/// has one with superblocks of the same number of columns. Throws
/// InvalidArgument when the columns differ or one group size does not
/// divide another.
GroupQuantized stack_groups(std::span<const GroupQuantized> parts);

/// Quantizes a [rows, cols] float matrix to 4 bits per weight in groups of
/// 32 columns: per group, asymmetric,
/// scale = (max - min) / 15 and min = -min(w), both rounded to binary16
/// when that keeps them finite and normal, then q = clamp(round((w + min) /
/// scale), 0, 15). Throws InvalidArgument for a non-finite weight.
GroupQuantized quantize_int4(std::span<const float> w, std::size_t rows, std::size_t cols);

}  // namespace assistgen::io

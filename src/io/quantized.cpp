// io/quantized.hpp: the group-quantized form, stacking parts into one form,
// and the int4 quantizer used for Hugging Face checkpoints at dtype i4.
#include "assistgen/io/quantized.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"

namespace assistgen::io {

float GroupQuantized::value(std::size_t r, std::size_t c) const {
  const std::size_t g = r * groups_per_row() + c / group;
  return static_cast<float>(static_cast<double>(scale[g]) * q[r * cols + c] -
                            static_cast<double>(min[g]));
}

void GroupQuantized::check(const std::string& what) const {
  if (bits != 4 && bits != 8)
    throw InvalidArgument(what + ": bits must be 4 or 8, got " + std::to_string(bits));
  if (group != 16 && group != 32)
    throw InvalidArgument(what + ": group must be 16 or 32, got " + std::to_string(group));
  if (q.size() != rows * cols || scale.size() != rows * groups_per_row() ||
      min.size() != scale.size())
    throw InvalidArgument(what + ": sizes of codes, scales and mins do not match [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (bits == 4)
    for (std::size_t i = 0; i < q.size(); ++i)
      if (q[i] > 15)
        throw InvalidArgument(what + ": code " + std::to_string(q[i]) + " at " + std::to_string(i) +
                              " does not fit 4 bits");
  for (std::size_t i = 0; i < scale.size(); ++i)
    if (!std::isfinite(scale[i]) || !std::isfinite(min[i]))
      throw InvalidArgument(what + ": group " + std::to_string(i) +
                            " has a non-finite scale or min");
  if (super == 0) return;
  if (scale_code.size() != scale.size() || min_code.size() != scale.size() ||
      super_scale.size() != rows * supers_per_row() || super_min.size() != super_scale.size())
    throw InvalidArgument(what + ": sizes of the superblock scales and codes do not match [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "] in superblocks of " +
                          std::to_string(super) + " groups");
  for (std::size_t i = 0; i < super_scale.size(); ++i)
    if (!std::isfinite(super_scale[i]) || !std::isfinite(super_min[i]))
      throw InvalidArgument(what + ": superblock " + std::to_string(i) +
                            " has a non-finite scale or min");
}

GroupQuantized GroupQuantized::take_rows(std::span<const std::size_t> order) const {
  GroupQuantized out;
  out.rows = order.size();
  out.cols = cols;
  out.group = group;
  out.bits = bits;
  out.super = super;
  // Row r of a [rows, n] array of this into the next row of out's (an empty
  // array, the second level when there is none, stays empty).
  auto take = [&](const auto& src, auto& dst, std::size_t n) {
    if (src.empty()) return;
    dst.reserve(order.size() * n);
    for (const std::size_t r : order) {
      if (r >= rows)
        throw InvalidArgument("GroupQuantized::take_rows: row " + std::to_string(r) + " of " +
                              std::to_string(rows));
      dst.insert(dst.end(), src.begin() + static_cast<std::ptrdiff_t>(r * n),
                 src.begin() + static_cast<std::ptrdiff_t>((r + 1) * n));
    }
  };
  const std::size_t gpr = groups_per_row(), spr = supers_per_row();
  take(q, out.q, cols);
  take(scale, out.scale, gpr);
  take(min, out.min, gpr);
  take(scale_code, out.scale_code, gpr);
  take(min_code, out.min_code, gpr);
  take(super_scale, out.super_scale, spr);
  take(super_min, out.super_min, spr);
  return out;
}

bool GroupQuantized::two_level_exact() const {
  if (super == 0 || scale_code.size() != scale.size() || min_code.size() != scale.size() ||
      super_scale.size() != rows * supers_per_row() || super_min.size() != super_scale.size())
    return false;
  const std::size_t gpr = groups_per_row(), spr = supers_per_row();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < gpr; ++g) {
      const std::size_t i = r * gpr + g, s = r * spr + g / super;
      if (super_scale[s] * static_cast<float>(scale_code[i]) != scale[i] ||
          super_min[s] * static_cast<float>(min_code[i]) != min[i])
        return false;
    }
  return true;
}

GroupQuantized stack_groups(std::span<const GroupQuantized> parts) {
  if (parts.empty()) throw InvalidArgument("stack_groups: no parts");
  GroupQuantized out;
  out.cols = parts.front().cols;
  out.bits = 0;
  out.group = 1u << 30;
  for (const auto& p : parts) {
    if (p.cols != out.cols)
      throw InvalidArgument("stack_groups: parts have " + std::to_string(out.cols) + " and " +
                            std::to_string(p.cols) + " columns");
    out.bits = std::max(out.bits, p.bits);
    out.group = std::min(out.group, p.group);
    out.rows += p.rows;
  }
  for (const auto& p : parts)
    if (p.group % out.group != 0)
      throw InvalidArgument("stack_groups: group " + std::to_string(out.group) +
                            " does not divide " + std::to_string(p.group));
  // The second level survives when all parts have superblocks of the same columns.
  const std::size_t super_cols = parts.front().super * parts.front().group;
  const bool two_level =
      super_cols > 0 && super_cols % out.group == 0 &&
      std::all_of(parts.begin(), parts.end(),
                  [&](const GroupQuantized& p) { return p.super * p.group == super_cols; });
  if (two_level) out.super = super_cols / out.group;
  const std::size_t gpr = out.groups_per_row(), spr = out.supers_per_row();
  out.q.reserve(out.rows * out.cols);
  out.scale.reserve(out.rows * gpr);
  out.min.reserve(out.rows * gpr);
  for (const auto& p : parts) {
    out.q.insert(out.q.end(), p.q.begin(), p.q.end());
    const std::size_t pg = p.groups_per_row();
    for (std::size_t r = 0; r < p.rows; ++r)
      for (std::size_t g = 0; g < gpr; ++g) {
        const std::size_t src = r * pg + g * out.group / p.group;
        out.scale.push_back(p.scale[src]);
        out.min.push_back(p.min[src]);
        if (two_level) {
          out.scale_code.push_back(p.scale_code[src]);
          out.min_code.push_back(p.min_code[src]);
        }
      }
    if (two_level) {
      // Same columns per superblock, so the same superblocks per row.
      if (p.supers_per_row() != spr)
        throw InvalidArgument("stack_groups: parts have " + std::to_string(p.supers_per_row()) +
                              " and " + std::to_string(spr) + " superblocks per row");
      out.super_scale.insert(out.super_scale.end(), p.super_scale.begin(), p.super_scale.end());
      out.super_min.insert(out.super_min.end(), p.super_min.begin(), p.super_min.end());
    }
  }
  return out;
}

namespace {
// v rounded to binary16 when that keeps it finite and normal (or zero), else v.
float f16_if_normal(float v) {
  const float h = f16_to_float(float_to_f16(v));
  if (h == 0.0f) return v == 0.0f ? 0.0f : v;
  return std::isfinite(h) && std::abs(h) >= 6.103515625e-05f ? h : v;
}
}  // namespace

GroupQuantized quantize_int4(std::span<const float> w, std::size_t rows, std::size_t cols) {
  if (w.size() != rows * cols)
    throw InvalidArgument("quantize_int4: " + std::to_string(w.size()) + " values for [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "]");
  GroupQuantized g;
  g.rows = rows;
  g.cols = cols;
  g.group = 32;
  g.bits = 4;
  const std::size_t gpr = g.groups_per_row();
  g.q.assign(rows * cols, 0);
  g.scale.assign(rows * gpr, 0.0f);
  g.min.assign(rows * gpr, 0.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t b = 0; b < gpr; ++b) {
      const std::size_t c0 = b * 32, c1 = std::min(cols, c0 + 32);
      const float* x = w.data() + r * cols;
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (std::size_t c = c0; c < c1; ++c) {
        if (!std::isfinite(x[c]))
          throw InvalidArgument("quantize_int4: weight [" + std::to_string(r) + ", " +
                                std::to_string(c) + "] is not finite");
        lo = std::min(lo, x[c]);
        hi = std::max(hi, x[c]);
      }
      const float scale = f16_if_normal((hi - lo) / 15.0f);
      const float mn = f16_if_normal(-lo);
      for (std::size_t c = c0; c < c1; ++c) {
        const float v = scale > 0.0f ? std::nearbyint((x[c] + mn) / scale) : 0.0f;
        g.q[r * cols + c] = static_cast<std::uint8_t>(std::clamp(v, 0.0f, 15.0f));
      }
      g.scale[r * gpr + b] = scale;
      g.min[r * gpr + b] = mn;
    }
  return g;
}

}  // namespace assistgen::io

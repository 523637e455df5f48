// GGUF's Q8_0, Q5_0, Q4_0, Q4_K and Q6_K blocks, and views of GGUF tensors (gguf_quant.hpp).
#pragma GCC optimize("fp-contract=off")  // a * b - c as ggml's reference: two roundings

#include "gguf_quant.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"

namespace assistgen::io::detail {

namespace {

float f16_at(const std::byte* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_float(h);
}
unsigned u8(const std::byte* p, std::size_t i) { return static_cast<unsigned>(p[i]); }

constexpr std::size_t kQ8_0 = 34, kQ5_0 = 22, kQ4_0 = 18, kQ4_K = 144, kQ6_K = 210;

// Sub-block j's 6-bit scale and min of a Q4_K block's 12 scale bytes.
void scale_min_k4(std::size_t j, const std::byte* s, unsigned& sc, unsigned& m) {
  if (j < 4) {
    sc = u8(s, j) & 63u;
    m = u8(s, j + 4) & 63u;
  } else {
    sc = (u8(s, j + 4) & 15u) | ((u8(s, j - 4) >> 6) << 4);
    m = (u8(s, j + 4) >> 4) | ((u8(s, j) >> 6) << 4);
  }
}

// Calls f(element index in block, code, scale, min) for every element of
// one block; (scale, min) are exact floats with w = scale * code - min.
// Q8_0's signed codes q in [-128, 127] as unsigned q + 128 with scale d and
// min 128 d: d (q + 128) - 128 d = d q exactly (binary16 d times a code of
// at most 8 bits is exact in float, and so is the difference).
template <class F>
void q8_0_block(const std::byte* b, F&& f) {
  const float d = f16_at(b);
  for (std::size_t i = 0; i < 32; ++i)
    f(i, static_cast<unsigned>(static_cast<int>(static_cast<std::int8_t>(b[2 + i])) + 128), d,
      128.0f * d);
}

// Q5_0: d, 4 bytes of fifth bits (bit j: element j, bit 16 + j: element
// 16 + j), 16 bytes of low nibbles; w = d (q - 16), a code of 5 bits with
// scale d and min 16 d (exact, as for Q8_0).
template <class F>
void q5_0_block(const std::byte* b, F&& f) {
  const float d = f16_at(b);
  std::uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  for (std::size_t i = 0; i < 16; ++i) {
    f(i, (u8(b + 6, i) & 15u) | (((qh >> i) & 1u) << 4), d, 16.0f * d);
    f(i + 16, (u8(b + 6, i) >> 4) | (((qh >> (i + 16)) & 1u) << 4), d, 16.0f * d);
  }
}

template <class F>
void q4_0_block(const std::byte* b, F&& f) {
  const float d = f16_at(b);
  for (std::size_t i = 0; i < 16; ++i) {
    f(i, u8(b + 2, i) & 15u, d, 8.0f * d);
    f(i + 16, u8(b + 2, i) >> 4, d, 8.0f * d);
  }
}

template <class F>
void q4_k_block(const std::byte* b, F&& f) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const std::byte* scales = b + 4;
  const std::byte* qs = b + 16;
  for (std::size_t j = 0; j < 8; ++j) {
    unsigned sc, m;
    scale_min_k4(j, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    for (std::size_t l = 0; l < 32; ++l) {
      const unsigned byte = u8(qs, 32 * (j / 2) + l);
      f(64 * (j / 2) + 32 * (j % 2) + l, j % 2 ? byte >> 4 : byte & 15u, d1, m1);
    }
  }
}

template <class F>
void q6_k_block(const std::byte* b, F&& f) {
  const std::byte* ql = b;
  const std::byte* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (std::size_t e = 0; e < 256; ++e) {
    const std::size_t h = e / 128, t = (e % 128) / 32, l = e % 32;
    const unsigned lo = u8(ql, 64 * h + l + 32 * (t % 2));
    const unsigned q = (t < 2 ? lo & 15u : lo >> 4) | (((u8(qh, 32 * h + l) >> (2 * t)) & 3u) << 4);
    const float s = d * static_cast<float>(sc[e / 16]);
    f(e, q, s, 32.0f * s);
  }
}

template <class F>
void for_each_block(GgmlType t, std::span<const std::byte> raw, F&& f) {
  switch (t) {
    case GgmlType::q8_0:
      for (std::size_t i = 0; i < raw.size() / kQ8_0; ++i)
        q8_0_block(raw.data() + i * kQ8_0,
                   [&](std::size_t e, unsigned q, float s, float m) { f(32 * i + e, q, s, m); });
      break;
    case GgmlType::q5_0:
      for (std::size_t i = 0; i < raw.size() / kQ5_0; ++i)
        q5_0_block(raw.data() + i * kQ5_0,
                   [&](std::size_t e, unsigned q, float s, float m) { f(32 * i + e, q, s, m); });
      break;
    case GgmlType::q4_0:
      for (std::size_t i = 0; i < raw.size() / kQ4_0; ++i)
        q4_0_block(raw.data() + i * kQ4_0,
                   [&](std::size_t e, unsigned q, float s, float m) { f(32 * i + e, q, s, m); });
      break;
    case GgmlType::q4_k:
      for (std::size_t i = 0; i < raw.size() / kQ4_K; ++i)
        q4_k_block(raw.data() + i * kQ4_K,
                   [&](std::size_t e, unsigned q, float s, float m) { f(256 * i + e, q, s, m); });
      break;
    case GgmlType::q6_k:
      for (std::size_t i = 0; i < raw.size() / kQ6_K; ++i)
        q6_k_block(raw.data() + i * kQ6_K,
                   [&](std::size_t e, unsigned q, float s, float m) { f(256 * i + e, q, s, m); });
      break;
    default:
      throw InvalidArgument("gguf: type " + ggml_type_name(t) + " has no group-quantized form");
  }
}

// The second level of Q4_K (d, dmin; 6-bit sc, m per sub-block of 32) and
// Q6_K (d, 32 d; the int8 scale of each sub-block of 16 for both) into g,
// whose scales and mins for_each_block filled with the products.
void add_super_codes(GgmlType t, std::span<const std::byte> raw, GroupQuantized& g) {
  if (t != GgmlType::q4_k && t != GgmlType::q6_k) return;
  const bool k4 = t == GgmlType::q4_k;
  const std::size_t bytes = k4 ? kQ4_K : kQ6_K, blocks = raw.size() / bytes;
  g.super = k4 ? 8 : 16;  // 256 columns
  g.scale_code.resize(g.scale.size());
  g.min_code.resize(g.scale.size());
  g.super_scale.resize(blocks);
  g.super_min.resize(blocks);
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::byte* b = raw.data() + i * bytes;
    std::int8_t* sc = g.scale_code.data() + i * g.super;
    std::int8_t* mn = g.min_code.data() + i * g.super;
    if (k4) {
      g.super_scale[i] = f16_at(b);
      g.super_min[i] = f16_at(b + 2);
      for (std::size_t j = 0; j < 8; ++j) {
        unsigned s, m;
        scale_min_k4(j, b + 4, s, m);
        sc[j] = static_cast<std::int8_t>(s);
        mn[j] = static_cast<std::int8_t>(m);
      }
    } else {
      const float d = f16_at(b + 208);
      g.super_scale[i] = d;
      g.super_min[i] = 32.0f * d;
      for (std::size_t j = 0; j < 16; ++j) sc[j] = mn[j] = static_cast<std::int8_t>(b[192 + j]);
    }
  }
}

}  // namespace

bool has_groups(GgmlType t) {
  return t == GgmlType::q8_0 || t == GgmlType::q5_0 || t == GgmlType::q4_0 ||
         t == GgmlType::q4_k || t == GgmlType::q6_k;
}

void dequantize(GgmlType t, std::span<const std::byte> raw, std::span<float> out) {
  // ggml's own expressions: Q8_0 q * d, Q5_0 (q - 16) * d, Q4_0 (q - 8) * d,
  // Q4_K d1 * q - m1, Q6_K d * sc * (q - 32).
  switch (t) {
    case GgmlType::q8_0:
      for_each_block(t, raw, [&](std::size_t i, unsigned q, float d, float) {
        out[i] = static_cast<float>(static_cast<int>(q) - 128) * d;
      });
      break;
    case GgmlType::q5_0:
      for_each_block(t, raw, [&](std::size_t i, unsigned q, float d, float) {
        out[i] = static_cast<float>(static_cast<int>(q) - 16) * d;
      });
      break;
    case GgmlType::q4_0:
      for_each_block(t, raw, [&](std::size_t i, unsigned q, float d, float) {
        out[i] = static_cast<float>(static_cast<int>(q) - 8) * d;
      });
      break;
    case GgmlType::q4_k:
      for_each_block(t, raw, [&](std::size_t i, unsigned q, float d1, float m1) {
        out[i] = d1 * static_cast<float>(q) - m1;
      });
      break;
    default:  // Q6_K: s = d * sc
      for_each_block(t, raw, [&](std::size_t i, unsigned q, float s, float) {
        out[i] = s * static_cast<float>(static_cast<int>(q) - 32);
      });
      break;
  }
}

GroupQuantized to_groups(GgmlType t, std::span<const std::byte> raw, std::size_t rows,
                         std::size_t cols, const std::string& what) {
  GroupQuantized g;
  g.rows = rows;
  g.cols = cols;
  g.group = t == GgmlType::q6_k ? 16 : 32;
  // 5- and 6-bit codes take a byte each, in the 8-bit kernels.
  g.bits = t == GgmlType::q4_0 || t == GgmlType::q4_k ? 4 : 8;
  g.q.resize(rows * cols);
  g.scale.resize(rows * g.groups_per_row());
  g.min.resize(g.scale.size());
  for_each_block(t, raw, [&](std::size_t i, unsigned q, float s, float m) {
    g.q[i] = static_cast<std::uint8_t>(q);
    if (i % g.group == 0) {  // rows are whole blocks, so element i / group is group i / group
      if (!std::isfinite(s) || !std::isfinite(m))
        throw FormatError(what + ": block scale at element " + std::to_string(i) +
                          " is not finite");
      g.scale[i / g.group] = s;
      g.min[i / g.group] = m;
    }
  });
  add_super_codes(t, raw, g);
  return g;
}

TensorView stored_view(const GgufTensorInfo& t, const std::string& src, std::string hf) {
  TensorView v;
  v.name = std::move(hf);
  v.file = src;
  v.shape = t.shape;
  v.data = t.data;
  const std::span<const std::byte> raw = t.data;
  const std::size_t n = static_cast<std::size_t>(t.numel());
  switch (t.type) {
    case GgmlType::f32:
      v.dtype = DType::f32;
      break;
    case GgmlType::f16:
      v.dtype = DType::f16;
      break;
    case GgmlType::bf16:
      v.dtype = DType::bf16;
      break;
    case GgmlType::q8_0:
    case GgmlType::q5_0:
    case GgmlType::q4_0:
    case GgmlType::q4_k:
    case GgmlType::q6_k: {
      // Floats as ggml dequantizes them; the codes for the grouped kernels.
      v.dtype = DType::f32;
      const GgmlType type = t.type;
      v.decode = [raw, type](std::span<float> out) { dequantize(type, raw, out); };
      const std::size_t rows = t.shape.size() == 2 ? static_cast<std::size_t>(t.shape[0]) : 1;
      const std::string what = src + ": tensor '" + t.name + "'";
      v.quantized = [raw, type, rows, n, what] {
        return to_groups(type, raw, rows, n / rows, what);
      };
      break;
    }
    default:
      throw UnsupportedError(src + ": tensor '" + t.name + "': type " + ggml_type_name(t.type) +
                             " is not supported (F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q6_K)");
  }
  return v;
}

}  // namespace assistgen::io::detail

// The group-quantized kernels (src/cpu/kernels_q4.hpp, private: included by
// path) for each format GGUF's types and int4 produce (4-bit codes in groups
// of 32, 8-bit codes in groups of 16 and 32; scales stored as binary16,
// float, or coded as int8 codes times binary16 superblock values), against a double-precision reference computed from the
// dequantized weights (w = scale * q - min) and the activations as the
// kernel quantizes them (sx * xq, quantize_row): the kernel's only roundings
// are float(acc), two FMAs per group and the final multiply, so
//   |y - ref| <= (2 G + 2) u S,  S = sx sum_k (|scale q| + |min|) |xq| + |b|,
// with G the number of groups. And against the unquantized activations:
// |y - x.w| <= that + sum_k |w| sx / 2. Every format is batch-invariant: a
// row's bits do not depend on the rows in the call, the thread count or the
// ISA.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../../src/cpu/kernels.hpp"
#include "../../src/cpu/kernels_q4.hpp"
#include "../../src/cpu/parallel.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/quantized.hpp"
#include "assistgen/io/safetensors.hpp"
#include "test_skip.hpp"

using namespace assistgen::cpu::detail;
using assistgen::io::GroupQuantized;

namespace {

constexpr double kU = std::numeric_limits<float>::epsilon() / 2;

// Random codes, scales and mins; f16: every scale and min a binary16 value.
// bits 6: 8-bit codes below 64 (Q6_K's), which pack_grouped stores in 6 bits.
GroupQuantized random_groups(std::size_t n, std::size_t k, unsigned bits, std::size_t group,
                             bool f16, std::uint64_t seed) {
  std::mt19937_64 eng(seed);
  GroupQuantized g;
  g.rows = n;
  g.cols = k;
  g.bits = bits == 6 ? 8 : bits;
  g.group = group;
  std::uniform_int_distribution<int> code(0, bits == 4 ? 15 : bits == 6 ? 63 : 255);
  std::uniform_real_distribution<float> sc(-0.01f, 0.03f), mn(-0.1f, 0.2f);
  for (std::size_t i = 0; i < n * k; ++i) g.q.push_back(static_cast<std::uint8_t>(code(eng)));
  for (std::size_t i = 0; i < n * g.groups_per_row(); ++i) {
    float s = sc(eng), m = mn(eng);
    if (f16) {
      s = assistgen::io::f16_to_float(assistgen::io::float_to_f16(s));
      m = assistgen::io::f16_to_float(assistgen::io::float_to_f16(m));
    }
    g.scale.push_back(s);
    g.min.push_back(m);
  }
  return g;
}

// random_groups with a second level as GGUF's K types have it: `super`
// groups per superblock, binary16 super values, int8 codes (Q4_K's 0..63,
// Q6_K's signed), scale and min their float products.
GroupQuantized random_two_level(std::size_t n, std::size_t k, unsigned bits, std::size_t group,
                                std::size_t super, std::uint64_t seed) {
  GroupQuantized g = random_groups(n, k, bits, group, false, seed);
  std::mt19937_64 eng(seed + 1);
  std::uniform_int_distribution<int> code(bits == 4 ? 0 : -128, bits == 4 ? 63 : 127);
  std::uniform_real_distribution<float> sup(1e-4f, 2e-3f);
  g.super = super;
  const std::size_t gpr = g.groups_per_row(), spr = g.supers_per_row();
  for (std::size_t i = 0; i < n * spr; ++i) {
    g.super_scale.push_back(assistgen::io::f16_to_float(assistgen::io::float_to_f16(sup(eng))));
    g.super_min.push_back(assistgen::io::f16_to_float(assistgen::io::float_to_f16(sup(eng))));
  }
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t b = 0; b < gpr; ++b) {
      const std::size_t i = r * gpr + b, s = r * spr + b / super;
      g.scale_code.push_back(static_cast<std::int8_t>(code(eng)));
      g.min_code.push_back(static_cast<std::int8_t>(code(eng)));
      g.scale[i] = g.super_scale[s] * static_cast<float>(g.scale_code.back());
      g.min[i] = g.super_min[s] * static_cast<float>(g.min_code.back());
    }
  return g;
}

std::vector<float> random_x(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 eng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = d(eng);
  return v;
}

std::vector<float> run(const PackedLinear& p, const float* x, std::size_t m, int threads = 1) {
  std::vector<float> y(m * p.n, std::numeric_limits<float>::quiet_NaN());
  std::vector<std::uint8_t> q;
  std::vector<float> qs;
  LinearScratch s{q, qs};
  linear(p, x, m, y.data(), s, threads);
  return y;
}

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_isa(saved); }
};

struct Format {
  unsigned bits;
  std::size_t group;
  bool f16;
  std::size_t super = 0;  // > 0: coded scales in superblocks of this many groups
};

GroupQuantized groups_of(const Format& f, std::size_t n, std::size_t k, std::uint64_t seed) {
  return f.super ? random_two_level(n, k, f.bits, f.group, f.super, seed)
                 : random_groups(n, k, f.bits, f.group, f.f16, seed);
}

}  // namespace

TEST_CASE("grouped kernels: within the rounding bound of the dequantized weights", "[kernels_q4]") {
  const Format f =
      GENERATE(Format{4, 32, true}, Format{4, 32, false}, Format{8, 16, true}, Format{8, 16, false},
               Format{8, 32, false}, Format{4, 32, false, 2}, Format{8, 16, false, 3},
               Format{8, 32, false, 2}, Format{6, 16, true}, Format{6, 16, false, 3});
  const bool with_bias = GENERATE(false, true);
  // A partial last group, a partial unit, and (coded) a partial last superblock.
  const std::size_t n = 45, k = f.group == 32 ? 104 : 88;
  const GroupQuantized g = groups_of(f, n, k, 7 + f.bits + f.group);
  const std::vector<float> bias = random_x(n, 3);
  const PackedLinear p = pack_grouped(g, with_bias ? bias.data() : nullptr);
  CHECK(p.f16_scales == f.f16);
  CHECK(p.super == f.super);
  const std::size_t m = 7;
  const std::vector<float> x = random_x(m * k, 11);
  const std::vector<float> y = run(p, x.data(), m);
  const std::size_t groups = (k + f.group - 1) / f.group;
  std::vector<std::uint8_t> xq((k + 31) / 32 * 32);
  for (std::size_t r = 0; r < m; ++r) {
    const float sx = quantize_row(&x[r * k], k, xq.size(), xq.data());
    for (std::size_t j = 0; j < n; ++j) {
      double ref = 0, mag = 0, exact = 0, wabs = 0;
      for (std::size_t kk = 0; kk < k; ++kk) {
        const std::size_t gi = j * groups + kk / f.group;
        const double w = double(g.scale[gi]) * g.q[j * k + kk] - double(g.min[gi]);
        const double xv = double(sx) * (int(xq[kk]) - 128);
        ref += w * xv;
        mag += (std::abs(double(g.scale[gi]) * g.q[j * k + kk]) + std::abs(double(g.min[gi]))) *
               std::abs(xv);
        exact += w * x[r * k + kk];
        wabs += std::abs(w);
        CHECK(packed_weight(p, j, kk) == static_cast<float>(w));
      }
      const double b = with_bias ? bias[j] : 0.0;
      const double bound = (2.0 * double(groups) + 2) * kU * (mag + std::abs(b)) + 1e-30;
      INFO("bits " << f.bits << " group " << f.group << " row " << r << " col " << j);
      CHECK(std::abs(y[r * n + j] - (ref + b)) <= bound);
      CHECK(std::abs(y[r * n + j] - (exact + b)) <= bound + wabs * sx / 2);
    }
  }
}

TEST_CASE("grouped kernels are batch-invariant across rows, threads and ISAs", "[kernels_q4]") {
  const Format f = GENERATE(Format{4, 32, true}, Format{4, 32, false}, Format{8, 16, false},
                            Format{8, 32, true}, Format{4, 32, false, 8}, Format{8, 16, false, 16},
                            Format{6, 16, true}, Format{6, 16, false, 16});
  // k: several chunks of groups when the rows take two passes or more
  // (kernels_q4.cpp: kChunkGroups), the last one partial where the format
  // allows (two-level scales come in superblocks of 256 k).
  const std::size_t n = 70, k = f.super ? 768 : 832;
  const GroupQuantized g = groups_of(f, n, k, 99);
  const std::vector<float> bias = random_x(n, 5);
  const PackedLinear p = pack_grouped(g, bias.data());
  const std::size_t max_m = 20;
  const std::vector<float> x = random_x(max_m * k, 17);
  IsaGuard guard;
  // Every ISA this CPU runs: on AMX CPUs amx runs the AVX-512 tiles too
  // (these types have no AMX tile path), scalar_amx the scalar fallback.
  std::vector<Isa> isas{Isa::scalar, Isa::scalar_amx};
  for (Isa isa : {Isa::avx512, Isa::amx})
    if (isa_available(isa)) isas.push_back(isa);
  std::vector<float> alone(max_m * n);
  set_isa(Isa::scalar);
  for (std::size_t r = 0; r < max_m; ++r) {
    const std::vector<float> y = run(p, &x[r * k], 1);
    std::memcpy(&alone[r * n], y.data(), n * sizeof(float));
  }
  force_split(true);
  for (Isa isa : isas) {
    set_isa(isa);
    for (std::size_t m : {1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 16, 20})
      for (int threads : {1, 2}) {
        const std::vector<float> y = run(p, x.data(), m, threads);
        INFO("isa " << int(isa) << " m " << m << " threads " << threads << " bits " << f.bits);
        CHECK(std::memcmp(y.data(), alone.data(), m * n * sizeof(float)) == 0);
      }
  }
  force_split(false);
}

TEST_CASE("codes below 64 in groups of 16 are stored in 6 bits, the same codes", "[kernels_q4]") {
  const std::size_t n = 45, k = 88;  // a partial unit and a partial last pair of steps' groups
  GroupQuantized g = random_groups(n, k, 6, 16, true, 31);
  for (std::size_t i = 0; i < g.q.size(); i += 13)
    g.q[i] = 63;  // the top codes, bit patterns 11 11
  const PackedLinear p = pack_grouped(g, nullptr);
  CHECK(p.bits == 6);
  CHECK(p.data.size() == p.units() * p.k_pad / 4 * 96);  // 3/4 of 8-bit codes' bytes
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t kk = 0; kk < k; ++kk) REQUIRE(packed_weight(p, j, kk) == g.value(j, kk));
  // One code of 64 or more keeps the 8-bit layout; so do groups of 32.
  GroupQuantized wide = g;
  wide.q[17] = 64;
  CHECK(pack_grouped(wide, nullptr).bits == 8);
  CHECK(pack_grouped(random_groups(n, 96, 6, 32, true, 32), nullptr).bits == 8);
}

TEST_CASE("mins that are the scale times a power of two are not stored, the same bits",
          "[kernels_q4]") {
  // Q4_0 (min 8 d), Q5_0 (16 d, 8-bit codes) and Q8_0 (128 d) alike.
  const auto [bits, factor] =
      GENERATE(std::pair<unsigned, float>{4, 8.0f}, std::pair<unsigned, float>{8, 16.0f},
               std::pair<unsigned, float>{8, 128.0f});
  const std::size_t n = 45, k = 104, m = 9;  // a partial unit and a partial last group
  GroupQuantized g = random_groups(n + 1, k, bits, 32, true, 41);
  for (std::size_t i = 0; i < g.scale.size(); ++i) g.min[i] = g.scale[i] * factor;
  g.scale[5] = 0.0f, g.min[5] = 0.0f;  // a zero scale ties too
  // The same values with one more row whose min is not tied: stored in full.
  GroupQuantized full = g;
  full.min.back() =
      assistgen::io::f16_to_float(assistgen::io::float_to_f16(full.min.back() * 1.5f + 0.01f));
  g.rows = n;
  g.q.resize(n * k);
  g.scale.resize(n * g.groups_per_row());
  g.min.resize(n * g.groups_per_row());
  const std::vector<float> bias = random_x(n + 1, 4), x = random_x(m * k, 8);
  const PackedLinear pt = pack_grouped(g, bias.data()), pf = pack_grouped(full, bias.data());
  CHECK(pt.min_factor == factor);
  CHECK(pf.min_factor == 0.0f);
  CHECK(pf.f16_scales);
  CHECK(pt.gscales.size() * 2 == pt.units() * (k + 31) / 32 * 64 * 2);  // scales alone: half
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t kk = 0; kk < k; kk += 3) CHECK(packed_weight(pt, j, kk) == g.value(j, kk));
  IsaGuard guard;
  for (Isa isa : {Isa::scalar, Isa::avx512}) {
    if (!isa_available(isa)) continue;
    set_isa(isa);
    for (std::size_t rows : {std::size_t{1}, m}) {
      const std::vector<float> yt = run(pt, x.data(), rows), yf = run(pf, x.data(), rows);
      INFO("isa " << int(isa) << " rows " << rows);
      bool same = true;  // the first n columns of every row
      for (std::size_t r = 0; r < rows; ++r)
        same =
            same && std::memcmp(yt.data() + r * n, yf.data() + r * (n + 1), n * sizeof(float)) == 0;
      CHECK(same);
    }
  }
  // Not a power of two (or not the same one everywhere): the mins are stored.
  GroupQuantized three = g;
  for (std::size_t i = 0; i < three.scale.size(); ++i) three.min[i] = three.scale[i] * 3.0f;
  CHECK(pack_grouped(three, nullptr).min_factor == 0.0f);
}

TEST_CASE("int4 packing quantizes each group of 32 asymmetrically", "[kernels_q4]") {
  const std::size_t n = 33, k = 72;  // a partial last group
  std::vector<float> w = random_x(n * k, 21);
  for (auto& v : w) v *= 0.05f;
  const PackedLinear p = pack_linear(WeightType::grouped, w.data(), n, k, nullptr);
  CHECK(p.bits == 4);
  CHECK(p.group == 32);
  CHECK(p.f16_scales);
  const GroupQuantized g = assistgen::io::quantize_int4(w, n, k);
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t c0 = 0; c0 < k; c0 += 32) {
      float lo = w[j * k + c0], hi = lo;
      for (std::size_t c = c0; c < std::min(k, c0 + 32); ++c)
        lo = std::min(lo, w[j * k + c]), hi = std::max(hi, w[j * k + c]);
      for (std::size_t c = c0; c < std::min(k, c0 + 32); ++c) {
        const double err = std::abs(double(packed_weight(p, j, c)) - w[j * k + c]);
        // half a step, the step and the min rounded to binary16, the value rounded to float
        CHECK(err <= (hi - lo) / 15.0 * (0.5 + 1e-3) + std::abs(lo) / 2048.0 + 1e-7);
        CHECK(packed_weight(p, j, c) == g.value(j, c));
      }
    }
  std::vector<float> bad = w;
  bad[5] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(assistgen::io::quantize_int4(bad, n, k), assistgen::InvalidArgument);
}

TEST_CASE("stack_groups keeps every value when it widens codes and splits groups", "[kernels_q4]") {
  const GroupQuantized a = random_groups(3, 64, 4, 32, false, 1);
  const GroupQuantized b = random_groups(2, 64, 8, 16, true, 2);
  const GroupQuantized parts[] = {a, b};
  const GroupQuantized s = assistgen::io::stack_groups(parts);
  CHECK(s.bits == 8);
  CHECK(s.group == 16);
  REQUIRE(s.rows == 5);
  for (std::size_t c = 0; c < 64; ++c) {
    for (std::size_t r = 0; r < 3; ++r) CHECK(s.value(r, c) == a.value(r, c));
    for (std::size_t r = 0; r < 2; ++r) CHECK(s.value(3 + r, c) == b.value(r, c));
  }
  const GroupQuantized other = random_groups(1, 32, 4, 32, false, 3);
  const GroupQuantized mismatched[] = {a, other};
  CHECK_THROWS_AS(assistgen::io::stack_groups(mismatched), assistgen::InvalidArgument);
  GroupQuantized bad = a;
  bad.q[4] = 16;
  CHECK_THROWS_WITH(pack_grouped(bad, nullptr), Catch::Contains("does not fit 4 bits"));
  bad = a;
  bad.scale[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(pack_grouped(bad, nullptr), assistgen::InvalidArgument);
}

TEST_CASE("two-level scales give the per-group form's bits in fewer bytes", "[kernels_q4]") {
  // Q4_K-like (4-bit, groups of 32, 8 per superblock) and Q6_K-like (8-bit,
  // groups of 16, 16 per superblock), two superblocks per row.
  const Format f =
      GENERATE(Format{4, 32, false, 8}, Format{8, 16, false, 16}, Format{6, 16, false, 16});
  const std::size_t n = 40, k = 512, m = 9;
  const GroupQuantized g = groups_of(f, n, k, 5);
  REQUIRE(g.two_level_exact());
  GroupQuantized flat = g;  // the same scales and mins, per group as floats
  flat.super = 0;
  const std::vector<float> bias = random_x(n, 6), x = random_x(m * k, 7);
  const PackedLinear pc = pack_grouped(g, bias.data()), pf = pack_grouped(flat, bias.data());
  CHECK(pc.super == f.super);
  CHECK_FALSE(pf.f16_scales);
  // 2 bytes per group of 32 columns against 8 (plus 4 bytes per superblock).
  CHECK(pc.gscales.size() * 3 < pf.gscales.size());
  IsaGuard guard;
  for (Isa isa : {Isa::scalar, Isa::avx512}) {
    if (!isa_available(isa)) continue;
    set_isa(isa);
    const std::vector<float> yc = run(pc, x.data(), m), yf = run(pf, x.data(), m);
    INFO("isa " << int(isa) << " bits " << f.bits);
    CHECK(std::memcmp(yc.data(), yf.data(), yc.size() * sizeof(float)) == 0);
  }
  for (std::size_t j = 0; j < n; j += 7)
    for (std::size_t kk = 0; kk < k; kk += 5) CHECK(packed_weight(pc, j, kk) == g.value(j, kk));
  // A second level that does not give the floats (or is not binary16) is
  // not used: the per-group floats are what the weights are.
  GroupQuantized off = g;
  off.scale[3] = std::nextafter(off.scale[3], 1.0f);
  CHECK_FALSE(off.two_level_exact());
  CHECK(pack_grouped(off, nullptr).super == 0);
  GroupQuantized wide = g;
  for (std::size_t i = 0; i < wide.super_scale.size(); ++i) {
    wide.super_scale[i] = std::nextafter(wide.super_scale[i], 1.0f);  // not a binary16
    for (std::size_t b = 0; b < wide.super; ++b) {
      const std::size_t gpr = wide.groups_per_row(), spr = wide.supers_per_row();
      const std::size_t r = i / spr, gi = (i % spr) * wide.super + b;
      if (gi < gpr)
        wide.scale[r * gpr + gi] =
            wide.super_scale[i] * static_cast<float>(wide.scale_code[r * gpr + gi]);
    }
  }
  CHECK(wide.two_level_exact());
  CHECK(pack_grouped(wide, nullptr).super == 0);
  // Inconsistent second-level sizes are an error naming the caller.
  GroupQuantized bad = g;
  bad.min_code.pop_back();
  CHECK_THROWS_WITH(pack_grouped(bad, nullptr), Catch::Contains("superblock"));
}

TEST_CASE("stack_groups keeps the second level when the superblocks agree", "[kernels_q4]") {
  // Q4_K's fused q/k with Q6_K's v: 8-bit codes in groups of 16, the 4-bit
  // part's groups split in two with their codes, superblocks of 256 columns.
  const GroupQuantized a = random_two_level(3, 512, 4, 32, 8, 1);
  const GroupQuantized b = random_two_level(2, 512, 8, 16, 16, 2);
  const GroupQuantized parts[] = {a, b};
  const GroupQuantized s = assistgen::io::stack_groups(parts);
  CHECK(s.bits == 8);
  CHECK(s.group == 16);
  CHECK(s.super == 16);
  CHECK(s.two_level_exact());
  REQUIRE(s.rows == 5);
  for (std::size_t c = 0; c < 512; ++c) {
    for (std::size_t r = 0; r < 3; ++r) CHECK(s.value(r, c) == a.value(r, c));
    for (std::size_t r = 0; r < 2; ++r) CHECK(s.value(3 + r, c) == b.value(r, c));
  }
  CHECK(pack_grouped(s, nullptr).super == 16);
  // A part without a second level (Q8_0, Q4_0), or other superblock
  // widths: the stack keeps the per-group floats only.
  const GroupQuantized plain = random_groups(2, 512, 8, 32, true, 3);
  const GroupQuantized mixed[] = {a, plain};
  CHECK(assistgen::io::stack_groups(mixed).super == 0);
  const GroupQuantized narrow = random_two_level(2, 512, 4, 32, 4, 4);
  const GroupQuantized widths[] = {a, narrow};
  const GroupQuantized w = assistgen::io::stack_groups(widths);
  CHECK(w.super == 0);
  for (std::size_t c = 0; c < 512; c += 3) CHECK(w.value(4, c) == narrow.value(1, c));
}

// The group-quantized kernels (src/cpu/kernels_q4.hpp, private: included by
// path) for each format GGUF's types and int4 produce (4-bit codes in groups
// of 32, 8-bit codes in groups of 16 and 32; scales stored as binary16 or
// float), against a double-precision reference computed from the
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
GroupQuantized random_groups(std::size_t n, std::size_t k, unsigned bits, std::size_t group,
                             bool f16, std::uint64_t seed) {
  std::mt19937_64 eng(seed);
  GroupQuantized g;
  g.rows = n;
  g.cols = k;
  g.bits = bits;
  g.group = group;
  std::uniform_int_distribution<int> code(0, bits == 4 ? 15 : 255);
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
};

}  // namespace

TEST_CASE("grouped kernels: within the rounding bound of the dequantized weights", "[kernels_q4]") {
  const Format f = GENERATE(Format{4, 32, true}, Format{4, 32, false}, Format{8, 16, true},
                            Format{8, 16, false}, Format{8, 32, false});
  const bool with_bias = GENERATE(false, true);
  const std::size_t n = 45, k = f.group == 32 ? 104 : 88;  // a partial last group, a partial unit
  const GroupQuantized g = random_groups(n, k, f.bits, f.group, f.f16, 7 + f.bits + f.group);
  const std::vector<float> bias = random_x(n, 3);
  const PackedLinear p = pack_grouped(g, with_bias ? bias.data() : nullptr);
  CHECK(p.f16_scales == f.f16);
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
                            Format{8, 32, true});
  const std::size_t n = 70, k = 256;
  const GroupQuantized g = random_groups(n, k, f.bits, f.group, f.f16, 99);
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
    for (std::size_t m : {1, 2, 3, 5, 6, 7, 9, 13, 20})
      for (int threads : {1, 2}) {
        const std::vector<float> y = run(p, x.data(), m, threads);
        INFO("isa " << int(isa) << " m " << m << " threads " << threads << " bits " << f.bits);
        CHECK(std::memcmp(y.data(), alone.data(), m * n * sizeof(float)) == 0);
      }
  }
  force_split(false);
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

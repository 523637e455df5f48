// The CPU backend's matmul kernels (src/cpu/kernels.hpp, private: included
// by path) against double-precision references, with bounds from the
// arithmetic each dtype performs:
//   f32 / bf16_f32: a sequential f32 FMA chain over k of the stored weights
//     (bf16 weights are exact after rounding, so the reference uses them):
//     |y - ref| <= gamma(k + 1) * (sum_k |x w| + |b|), gamma(j) = j u / (1 - j u);
//   bf16: the same bound with the activations rounded to bf16 as the kernel
//     does (products of bf16 values are exact in f32; k rounded additions);
//   int8: an exact int32 dot of the quantized values, then float(acc) (one
//     rounding), sx * sw (one) and a fused multiply-add (one): <= 4 u |ref| + u |b|.
// Also: the int8 result stays within the error its quantization implies, and
// every kernel is batch-invariant: a row's bits do not depend on the number of
// rows in the call, the thread count, or (for these operations) the ISA.
#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "../../src/cpu/kernels.hpp"
#include "test_skip.hpp"

using namespace assistgen::cpu::detail;

namespace {

constexpr double kU = std::numeric_limits<float>::epsilon() / 2;  // unit roundoff of f32

double gamma(std::size_t j) {
  return static_cast<double>(j) * kU / (1 - static_cast<double>(j) * kU);
}

std::vector<float> random_vec(std::size_t n, std::uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 eng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& e : v) e = d(eng);
  return v;
}

const char* type_name(WeightType t) {
  switch (t) {
    case WeightType::f32:
      return "f32";
    case WeightType::bf16:
      return "bf16";
    case WeightType::bf16_f32:
      return "bf16_f32";
    case WeightType::i8:
      return "i8";
    case WeightType::grouped:  // test_kernels_q4.cpp
      return "grouped";
  }
  return "?";
}

std::vector<float> run(const PackedLinear& p, const std::vector<float>& x, std::size_t m,
                       int threads = 1) {
  std::vector<float> y(m * p.n, std::numeric_limits<float>::quiet_NaN());
  std::vector<std::uint8_t> q;
  std::vector<float> qs;
  LinearScratch s{q, qs};
  linear(p, x.data(), m, y.data(), s, threads);
  return y;
}

bool same_bits(const float* a, const float* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;  // (empty vectors: null data())
}

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_isa(saved); }
};

}  // namespace

// AVX-512 cases skip visibly (ASSISTGEN_SKIP, ctest: "Skipped") on a CPU
// without it, instead of running the scalar kernels a second time.
bool has_avx512() { return isa_available(Isa::avx512); }  // (AMX CPUs too)
#define SKIP_WITHOUT_AVX512() \
  if (!has_avx512()) ASSISTGEN_SKIP("no AVX-512 (F/BW/VL/VNNI/BF16) on this CPU")

void check_against_reference(Isa isa) {
  IsaGuard guard;
  set_isa(isa);
  REQUIRE(active_isa() == isa);
  const WeightType type =
      GENERATE(WeightType::f32, WeightType::bf16, WeightType::bf16_f32, WeightType::i8);
  const bool bias = GENERATE(false, true);
  const std::size_t m = GENERATE(1, 3, 11, 19);  // one and several row passes
  for (auto [n, k] : {std::pair<std::size_t, std::size_t>{1, 1},
                      {31, 3},
                      {32, 64},
                      {33, 7},
                      {100, 257},
                      {64, 130}}) {
    const auto w = random_vec(n * k, n * 1000 + k, 0.05f);
    const auto b = random_vec(n, 7, 0.1f);
    const auto x = random_vec(m * k, k + 3);
    const PackedLinear p = pack_linear(type, w.data(), n, k, bias ? b.data() : nullptr);
    const auto y = run(p, x, m);
    INFO("m " << m << " " << type_name(type) << " isa " << isa_name(isa) << " n " << n << " k " << k << " bias "
              << bias);
    std::vector<std::uint8_t> q(p.k_pad);
    std::vector<std::uint16_t> xb(p.k_pad);
    std::vector<float> xround(k);
    for (std::size_t r = 0; r < m; ++r) {
      const float* xr = x.data() + r * k;
      if (type == WeightType::bf16) {  // the reference multiplies what the kernel multiplies
        bf16_row(xr, k, p.k_pad, xb.data());
        for (std::size_t kk = 0; kk < k; ++kk)
          xround[kk] = std::bit_cast<float>(std::uint32_t{xb[kk]} << 16);
      }
      const float sx = type == WeightType::i8 ? quantize_row(xr, k, p.k_pad, q.data()) : 0.0f;
      for (std::size_t j = 0; j < n; ++j) {
        double ref = 0, mag = 0, exact = 0, qerr = 0;
        for (std::size_t kk = 0; kk < k; ++kk) {
          const double wv = packed_weight(p, j, kk);
          exact += static_cast<double>(xr[kk]) * w[j * k + kk];
          if (type == WeightType::i8) {
            // The integer dot the kernel computes exactly; scaled after the loop.
            ref += (static_cast<int>(q[kk]) - 128) * std::nearbyint(wv / p.scale[j]);
            // Quantization error of this term: |x| * sw / 2 + |w| * sx / 2 + sx * sw / 4.
            qerr += std::abs(xr[kk]) * p.scale[j] / 2 + std::abs(w[j * k + kk]) * sx / 2 +
                    sx * p.scale[j] / 4;
          } else {
            const double xv = type == WeightType::bf16 ? xround[kk] : xr[kk];
            ref += xv * wv;
            mag += std::abs(xv * wv);
          }
        }
        const double bj = bias ? b[j] : 0.0;
        if (type == WeightType::i8) ref *= static_cast<double>(sx) * p.scale[j];
        ref += bj;
        exact += bj;
        const double got = y[r * n + j];
        if (type == WeightType::i8) {
          REQUIRE(std::abs(got - ref) <=
                  4 * kU * std::abs(ref - bj) + 2 * kU * std::abs(bj) + 1e-30);
          REQUIRE(std::abs(got - exact) <= qerr * 1.001 + 1e-6);
        } else {
          // (+ k * 2^-126: bf16's flushed denormals)
          REQUIRE(std::abs(got - ref) <=
                  gamma(k + 1) * (mag + std::abs(bj)) + static_cast<double>(k) * 0x1p-126);
        }
      }
    }
  }
}

TEST_CASE("scalar kernels match a double reference within dtype-derived bounds", "[kernels]") {
  check_against_reference(Isa::scalar);
}

TEST_CASE("AVX-512 kernels match a double reference within dtype-derived bounds", "[kernels][avx512]") {
  SKIP_WITHOUT_AVX512();
  check_against_reference(Isa::avx512);
}

TEST_CASE("the AMX order's scalar reference matches a double reference within the same bounds",
          "[kernels][amx]") {
  check_against_reference(Isa::scalar_amx);
}

TEST_CASE("AMX kernels match a double reference within dtype-derived bounds", "[kernels][amx]") {
  if (!isa_available(Isa::amx))
    ASSISTGEN_SKIP("no AMX (AMX-TILE/BF16/INT8) on this CPU, or Linux refused the tile state");
  check_against_reference(Isa::amx);
}

TEST_CASE("bf16 packing rounds to nearest even, int8 packing is symmetric per row", "[kernels]") {
  const float one = 1.0f, tie_down = 1.0f + 0x1p-8f, tie_up = 1.0f + 3 * 0x1p-8f,
              above = 1.0f + 0x1p-8f + 0x1p-20f;
  const std::vector<float> w{one, tie_down, tie_up, above, -tie_down, 0.0f};
  const WeightType bf = GENERATE(WeightType::bf16, WeightType::bf16_f32);
  const PackedLinear p = pack_linear(bf, w.data(), w.size(), 1, nullptr);
  CHECK(packed_weight(p, 0, 0) == 1.0f);
  CHECK(packed_weight(p, 1, 0) == 1.0f);                // tie to even (down)
  CHECK(packed_weight(p, 2, 0) == 1.0f + 4 * 0x1p-8f);  // tie to even (up)
  CHECK(packed_weight(p, 3, 0) == 1.0f + 2 * 0x1p-8f);  // above the tie
  CHECK(packed_weight(p, 4, 0) == -1.0f);
  CHECK(packed_weight(p, 5, 0) == 0.0f);

  const std::vector<float> r{0.5f, -1.27f, 0.01f, 0.0f,
                             0.0f, 0.0f,   0.0f,  0.0f};  // row 1 is all zeros
  const PackedLinear q = pack_linear(WeightType::i8, r.data(), 2, 4, nullptr);
  CHECK(q.scale[0] == Approx(1.27f / 127));
  CHECK(packed_weight(q, 0, 1) == Approx(-1.27f));
  CHECK(packed_weight(q, 0, 0) == Approx(0.5f).margin(q.scale[0] / 2));
  CHECK(packed_weight(q, 1, 2) == 0.0f);
  const std::vector<float> zeros(4, 0.0f);
  CHECK(run(q, zeros, 1) == std::vector<float>{0.0f, 0.0f});
}

TEST_CASE("kernels are batch-invariant: a row's bits do not depend on m or threads",
          "[kernels][invariance]") {
  IsaGuard guard;
  const WeightType type =
      GENERATE(WeightType::f32, WeightType::bf16, WeightType::bf16_f32, WeightType::i8);
  INFO(type_name(type));
  // Large enough that linear() really uses two threads (>= kThreadWork each).
  const std::size_t n = 1000, k = 1100, max_m = 17;
  const auto w = random_vec(n * k, 11, 0.05f);
  const auto b = random_vec(n, 12, 0.1f);
  const auto x = random_vec(max_m * k, 13);
  const PackedLinear p = pack_linear(type, w.data(), n, k, b.data());
  REQUIRE(p.data.size() >= (std::size_t{2} << 20) / (type == WeightType::f32  ? 1
                                                     : type == WeightType::i8 ? 4
                                                                              : 2));

  const auto all = run(p, x, max_m, 2);
  for (std::size_t m = 1; m <= max_m; ++m) {
    // Rows [max_m - m, max_m) computed in a call of m rows, on 1 and 2 threads.
    const std::vector<float> xs(x.begin() + static_cast<std::ptrdiff_t>((max_m - m) * k), x.end());
    for (int threads : {1, 2}) {
      const auto y = run(p, xs, m, threads);
      INFO("m " << m << " threads " << threads);
      REQUIRE(same_bits(y.data(), all.data() + (max_m - m) * n, m * n));
    }
  }
}

TEST_CASE("matmul kernels: scalar and AVX-512 give the same bits", "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  const WeightType type =
      GENERATE(WeightType::f32, WeightType::bf16, WeightType::bf16_f32, WeightType::i8);
  INFO(type_name(type));
  const std::size_t n = 1000, k = 1100, m = 17;
  const auto w = random_vec(n * k, 11, 0.05f);
  const auto b = random_vec(n, 12, 0.1f);
  const auto x = random_vec(m * k, 13);
  const PackedLinear p = pack_linear(type, w.data(), n, k, b.data());
  set_isa(Isa::avx512);
  const auto avx = run(p, x, m, 2);
  set_isa(Isa::scalar);
  const auto scalar = run(p, x, m, 2);
  REQUIRE(same_bits(scalar.data(), avx.data(), avx.size()));
}

TEST_CASE("fixed-order reductions do not depend on where the data sits", "[kernels][invariance]") {
  const auto a = random_vec(300, 1), b = random_vec(300, 2);
  for (std::size_t len : {1, 15, 16, 17, 64, 299}) {
    const float d0 = dot(a.data(), b.data(), len), s0 = sum(a.data(), len),
                q0 = sum_squares(a.data(), len);
    double ref = 0, mag = 0;
    for (std::size_t i = 0; i < len; ++i)
      ref += static_cast<double>(a[i]) * b[i], mag += std::abs(a[i] * b[i]);
    CHECK(std::abs(d0 - ref) <= gamma(len + 1) * mag);
    for (std::size_t shift = 1; shift < 16; ++shift) {
      std::vector<float> a2(len + shift), b2(len + shift);
      std::copy_n(a.begin(), len, a2.begin() + static_cast<std::ptrdiff_t>(shift));
      std::copy_n(b.begin(), len, b2.begin() + static_cast<std::ptrdiff_t>(shift));
      REQUIRE(dot(a2.data() + shift, b2.data() + shift, len) == d0);
      REQUIRE(sum(a2.data() + shift, len) == s0);
      REQUIRE(sum_squares(a2.data() + shift, len) == q0);
    }
  }
}

TEST_CASE("activation conversion: AVX-512 and scalar give the same bytes, special values included",
          "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float specials[] = {
      0.0f,   -0.0f, 0x1p-140f, -0x1p-130f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f,
      0.5f,   -0.5f, 1.5f,      2.5f,       -2.5f,          3e38f,
      -3e38f, inf,   -inf,      nan};
  auto values = random_vec(64, 5, 3.0f);
  for (std::size_t i = 0; i < values.size(); i += 5) values[i] = specials[i / 5 % 16];
  // Rows whose largest |x| is finite, infinite, or hidden behind NaNs only.
  std::vector<std::vector<float>> rows{values, {nan, nan, 1.0f}, {inf, 2.0f, -3.0f, nan}};
  for (std::size_t k = 1; k <= 40; ++k) rows.emplace_back(values.begin(), values.begin() + k);
  for (const auto& row : rows) {
    const std::size_t k = row.size(), k_pad = (k + 3) / 4 * 4;
    INFO("k " << k);
    std::vector<std::uint8_t> q_scalar(k_pad, 7), q_avx(k_pad, 9);
    std::vector<std::uint16_t> b_scalar(k_pad, 7), b_avx(k_pad, 9);
    set_isa(Isa::scalar);
    const float s_scalar = quantize_row(row.data(), k, k_pad, q_scalar.data());
    bf16_row(row.data(), k, k_pad, b_scalar.data());
    set_isa(Isa::avx512);
    const float s_avx = quantize_row(row.data(), k, k_pad, q_avx.data());
    bf16_row(row.data(), k, k_pad, b_avx.data());
    CHECK(std::bit_cast<std::uint32_t>(s_scalar) == std::bit_cast<std::uint32_t>(s_avx));
    CHECK(q_scalar == q_avx);
    CHECK(b_scalar == b_avx);
  }
}

TEST_CASE("weight buffers: aligned, disjoint, and shared slabs released when freed", "[kernels]") {
  using assistgen::cpu::detail::AlignedBytes;
  using assistgen::cpu::detail::shared_slabs;
  const std::size_t before = shared_slabs();
  std::mt19937 rng(3);
  std::vector<AlignedBytes> bufs;
  // Below, within and above the shared range, past several 32 MiB slabs.
  for (std::size_t size : {100, 65536, 70000, 1 << 20, (2 << 20) - 64, 2 << 20, 5 << 20})
    for (int i = 0; i < (size == 1 << 20 ? 40 : 12); ++i)
      bufs.emplace_back(size + 64 * static_cast<std::size_t>(i));
  for (std::size_t b = 0; b < bufs.size(); ++b) {
    CHECK(reinterpret_cast<std::uintptr_t>(bufs[b].data()) % 64 == 0);
    std::memset(bufs[b].data(), static_cast<int>(b), bufs[b].size());
  }
  bool intact = true;  // no buffer's bytes were written by another's memset
  for (std::size_t b = 0; b < bufs.size(); ++b)
    for (std::size_t i = 0; i < bufs[b].size(); i += 61)
      intact = intact && bufs[b].data()[i] == static_cast<std::byte>(b);
  CHECK(intact);
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(shared_slabs() >= 2);  // over 32 MiB of shared buffers
#endif
  std::shuffle(bufs.begin(), bufs.end(), rng);
  bufs.clear();
  CHECK(shared_slabs() <= before);  // every slab of these buffers released
  // Threads allocating and freeing at once (the ThreadSanitizer stage runs this).
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        AlignedBytes a((64 << 10) + static_cast<std::size_t>(t * 4096 + i * 64));
        a.data()[0] = std::byte{1};
      }
    });
  for (auto& th : threads) th.join();
  CHECK(shared_slabs() <= before);
}

TEST_CASE("the activation panel: every ISA puts step s of row r at s * m + r",
          "[kernels][avx512]") {
  IsaGuard guard;
  std::vector<Isa> isas{Isa::scalar};
  if (has_avx512()) isas.push_back(Isa::avx512);
  // Rows and steps on both sides of the 16 x 16 blocks (and of the 4 rows
  // they start at), rows padded apart.
  for (std::size_t m : {1, 2, 3, 4, 7, 15, 16, 17, 33})
    for (std::size_t steps : {1, 3, 15, 16, 17, 40, 100}) {
      const std::size_t ld = steps + 5;
      std::vector<std::uint32_t> rows(m * ld);
      for (std::size_t i = 0; i < rows.size(); ++i)
        rows[i] = static_cast<std::uint32_t>(i * 2654435761u);
      for (Isa isa : isas) {
        INFO("m " << m << " steps " << steps << " isa " << isa_name(isa));
        set_isa(isa);
        std::vector<std::uint32_t> xp(m * steps + 16, 0xdeadbeefu);
        const std::uint32_t* panel = panel_words(rows.data(), ld, m, steps, xp.data());
        CHECK(panel == (m == 1 ? rows.data() : xp.data()));  // one row: no copy
        bool ok = true;
        for (std::size_t s = 0; s < steps; ++s)
          for (std::size_t r = 0; r < m; ++r) ok = ok && panel[s * m + r] == rows[r * ld + s];
        CHECK(ok);
        for (std::size_t i = m == 1 ? 0 : m * steps; i < xp.size(); ++i)
          CHECK(xp[i] == 0xdeadbeefu);  // nothing past it
      }
    }
}

TEST_CASE("grouped activation codes: AVX-512 gives the scalar path's codes and group sums",
          "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto values = random_vec(201, 9, 3.0f);  // rows of up to 200 from index 0 or 1
  const float specials[] = {0.0f, -0.0f, 0x1p-140f, 2.5f, -2.5f, 3e38f, -inf, nan};
  for (std::size_t i = 0; i < values.size(); i += 23) values[i] = specials[i / 23 % 8];
  for (std::size_t group : {16, 32})
    for (std::size_t k : {1, 15, 16, 17, 31, 32, 33, 100, 200}) {
      const std::size_t k_pad = (k + group - 1) / group * group;
      INFO("group " << group << " k " << k);
      std::vector<std::int8_t> c_scalar(k_pad, 7), c_avx(k_pad, 9);
      std::vector<float> s_scalar(k_pad / group, -1), s_avx(k_pad / group, -2);
      // Rows whose largest |x| is finite (no specials), and with specials.
      for (std::size_t first : {1, 0}) {
        const float* x = values.data() + first;
        set_isa(Isa::scalar);
        const float a = quantize_groups(x, k, k_pad, group, c_scalar.data(), s_scalar.data());
        set_isa(Isa::avx512);
        const float b = quantize_groups(x, k, k_pad, group, c_avx.data(), s_avx.data());
        CHECK(std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b));
        CHECK(c_scalar == c_avx);
        CHECK(s_scalar == s_avx);
      }
    }
}

TEST_CASE("activation conversion: the scalar path's special values", "[kernels]") {
  IsaGuard guard;
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // What the scalar path defines: NaN skipped by the scale and quantized to 0 (byte 128).
  set_isa(Isa::scalar);
  const std::vector<float> r{nan, 2.0f, -1.0f, inf};
  std::vector<std::uint8_t> q(4);
  const std::vector<float> finite{nan, 2.0f, -1.0f};
  CHECK(quantize_row(finite.data(), 3, 4, q.data()) == 2.0f / 127);
  CHECK(q == std::vector<std::uint8_t>{128, 255, 128 - 64, 128});  // -63.5 rounds to even: -64
  CHECK(std::isinf(quantize_row(r.data(), 4, 4, q.data())));
  CHECK(q == std::vector<std::uint8_t>{128, 128, 128, 128});
}

TEST_CASE("reductions: AVX-512 and scalar give the same bits", "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  const auto a = random_vec(200, 21), b = random_vec(200, 22, 1e-3f);
  for (std::size_t n : {0, 1, 5, 15, 16, 17, 31, 32, 33, 64, 100, 200}) {
    INFO("n " << n);
    float r[2][3];
    for (int v = 0; v < 2; ++v) {
      set_isa(v == 0 ? Isa::scalar : Isa::avx512);
      r[v][0] = dot(a.data(), b.data(), n);
      r[v][1] = sum(b.data(), n);
      r[v][2] = sum_squares(a.data(), n);
    }
    for (int f = 0; f < 3; ++f)
      CHECK(std::bit_cast<std::uint32_t>(r[0][f]) == std::bit_cast<std::uint32_t>(r[1][f]));
  }
}

TEST_CASE("kernel_exp: within 1 ulp of e^x, 0 and infinity at the ends", "[kernels]") {
  // Every 997th float in [-110, 95], and the ends of the range; failures
  // counted (one CHECK per float would take seconds under the sanitizers).
  std::size_t checked = 0, failed = 0;
  float first_bad = 0.0f;
  std::vector<float> xs{-110.0f, 95.0f};
  for (const float end : {-110.0f, 95.0f})  // [-0, -110] and [+0, 95] by bit pattern
    for (std::uint32_t b = std::bit_cast<std::uint32_t>(end < 0 ? -0.0f : 0.0f);
         b <= std::bit_cast<std::uint32_t>(end); b += 997)
      xs.push_back(std::bit_cast<float>(b));
  for (const float x : xs) {
    const double want = std::exp(static_cast<double>(x));
    const float got = kernel_exp(x);
    const auto wf = static_cast<float>(want);
    bool ok;
    if (std::isinf(wf))
      ok = std::isinf(got);
    else if (wf < std::numeric_limits<float>::min())  // subnormal: one step of 2^-149
      ok = std::abs(got - want) <= 0x1p-149;
    else
      ok = std::abs(got - want) <= std::nextafter(wf, INFINITY) - wf;
    if (!ok && failed++ == 0) first_bad = x;
    ++checked;
  }
  INFO("first float out of bounds: " << first_bad << " (e^x " << kernel_exp(first_bad) << ")");
  CHECK(failed == 0);
  CHECK(checked > 100000);
  CHECK(kernel_exp(0.0f) == 1.0f);
  CHECK(kernel_exp(-0.0f) == 1.0f);
  CHECK(kernel_exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(kernel_exp(-104.0f) == 0.0f);
  CHECK(std::isinf(kernel_exp(89.0f)));
  CHECK(std::isinf(kernel_exp(std::numeric_limits<float>::infinity())));
  CHECK(std::isfinite(kernel_exp(88.72f)));
  CHECK(std::isnan(kernel_exp(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("silu: AVX-512 and scalar give the same bits", "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  auto gate = random_vec(300, 41), up = random_vec(300, 42);
  for (std::size_t i = 0; i < gate.size(); i += 7) gate[i] *= 40.0f;  // both tails of e^x
  gate[3] = 1e30f, gate[4] = -1e30f, gate[5] = std::numeric_limits<float>::infinity();
  gate[6] = 88.9f, gate[8] = -88.9f, gate[9] = 104.5f, gate[10] = 0.0f;
  for (std::size_t n : {0, 1, 15, 16, 17, 33, 300}) {
    for (const bool gated : {true, false}) {
      INFO("n " << n << " gated " << gated);
      std::vector<float> out[2];
      for (int v = 0; v < 2; ++v) {
        set_isa(v == 0 ? Isa::scalar : Isa::avx512);
        out[v].assign(n + 1, 7.0f);
        silu(gate.data(), gated ? up.data() : nullptr, n, out[v].data());
      }
      CHECK(std::memcmp(out[0].data(), out[1].data(), (n + 1) * sizeof(float)) == 0);
      CHECK(out[0][n] == 7.0f);              // nothing past n is written
      for (std::size_t i = 0; i < n; ++i) {  // against a double reference
        const double g = gate[i], want = g / (1 + std::exp(-g)) * (gated ? up[i] : 1.0);
        if (std::isfinite(want)) CHECK(std::abs(out[0][i] - want) <= 4e-7 * std::abs(want) + 1e-30);
      }
    }
  }
}

namespace {
// attend() on the given ISA: the scalar result is also checked against a
// double reference; returns the output.
std::vector<float> attend_case(Isa isa, std::size_t hd, std::size_t len) {
  set_isa(isa);
  const auto q = random_vec(hd, hd + len), keys = random_vec(len * hd, 3 * len + hd),
             values = random_vec(len * hd, 5 * len + hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> scores(len), out(hd, 7.0f);
  attend(q.data(), keys.data(), values.data(), len, hd, scale, scores.data(), out.data());
  return out;
}
}  // namespace

TEST_CASE("attend: AVX-512 and scalar give the same bits", "[kernels][invariance][avx512]") {
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  for (std::size_t hd : {1, 17, 64, 80, 128}) {
    for (std::size_t len : {1, 2, 9, 16, 17, 32, 73}) {
      INFO("hd " << hd << " len " << len);
      const auto scalar = attend_case(Isa::scalar, hd, len);
      const auto avx = attend_case(Isa::avx512, hd, len);
      CHECK(std::memcmp(scalar.data(), avx.data(), hd * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attend_rows: a tree's scattered rows give attend()'s bits on every ISA",
          "[kernels][invariance][avx512]") {
  // Rows [first, first + count) of the cache plus `extra` slots (a tree
  // node's ancestors), against attend() over those rows copied contiguously.
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  for (std::size_t hd : {17, 64, 128})
    for (std::size_t count : {0, 5, 16, 40}) {
      const std::size_t slots = 60;
      const auto q = random_vec(hd, hd + count), keys = random_vec(slots * hd, 7 + count),
                 values = random_vec(slots * hd, 11 + count);
      const std::vector<std::uint32_t> extra{59, 47, 45, 52, 58, 50, 44, 55, 49, 46, 57, 51, 48,
                                             53, 54, 56, 43};
      const std::size_t first = 2, len = count + extra.size();
      std::vector<float> ck, cv;
      for (std::size_t j = 0; j < len; ++j) {
        const std::size_t s = j < count ? first + j : extra[j - count];
        ck.insert(ck.end(), keys.begin() + s * hd, keys.begin() + (s + 1) * hd);
        cv.insert(cv.end(), values.begin() + s * hd, values.begin() + (s + 1) * hd);
      }
      const float scale = 0.125f;
      for (Isa isa : {Isa::scalar, Isa::avx512}) {
        set_isa(isa);
        std::vector<float> scores(len), a(hd), b(hd);
        attend_rows(q.data(), keys.data(), values.data(), first, count, extra, hd, scale,
                    scores.data(), a.data());
        set_isa(Isa::scalar);
        attend(q.data(), ck.data(), cv.data(), len, hd, scale, scores.data(), b.data());
        INFO("hd " << hd << " count " << count << " isa " << int(isa));
        CHECK(std::memcmp(a.data(), b.data(), hd * sizeof(float)) == 0);
      }
    }
}

TEST_CASE("attend_many: every query gets attend_rows()'s bits on every ISA",
          "[kernels][invariance][avx512]") {
  // Queries over one cache: a chain's rows (growing ranges), a tree's rows
  // (one prefix, different ancestors), a sliding window (different firsts)
  // and a range that shares fewer than 16 rows with the others.
  SKIP_WITHOUT_AVX512();
  IsaGuard guard;
  const std::size_t slots = 120;
  const std::vector<std::uint32_t> anc_a{100, 103}, anc_b{100, 101, 104, 110};
  struct Case {
    std::size_t first, count;
    std::vector<std::uint32_t> extra;
  };
  const std::vector<std::vector<Case>> cases{
      {{0, 97, {}}, {0, 98, {}}, {0, 99, {}}, {0, 100, {}}},              // chain rows
      {{0, 100, anc_a}, {0, 100, anc_b}, {0, 100, {}}, {0, 100, anc_a}},  // tree rows
      {{3, 64, {}}, {10, 60, anc_b}, {20, 51, {}}, {0, 71, anc_a}},       // windows
      {{0, 40, {}}, {30, 20, {}}, {5, 50, anc_b}},  // 10 rows shared: one query at a time
      {{7, 1, anc_a}},                              // one query
      // Seven queries: the shared blocks go 4 + 2 + 1 at a time (values) and
      // 2 + 2 + 2 + 1 (scores).
      {{0, 97, {}},
       {0, 98, {}},
       {0, 99, {}},
       {0, 100, anc_a},
       {0, 100, anc_b},
       {2, 95, {}},
       {0, 100, {}}},
  };
  for (std::size_t hd : {17, 64, 128}) {
    const auto keys = random_vec(slots * hd, 31 + hd), values = random_vec(slots * hd, 37 + hd);
    for (std::size_t ci = 0; ci < cases.size(); ++ci) {
      const auto& qc = cases[ci];
      const auto q = random_vec(qc.size() * hd, 41 + ci);
      for (Isa isa : {Isa::scalar, Isa::avx512}) {
        set_isa(isa);
        std::vector<std::vector<float>> scores(qc.size(), std::vector<float>(slots + 8, 3.0f));
        std::vector<float> out(qc.size() * hd, 5.0f), want(qc.size() * hd);
        std::vector<AttendQuery> qs;
        for (std::size_t i = 0; i < qc.size(); ++i)
          qs.push_back({q.data() + i * hd, qc[i].first, qc[i].count, qc[i].extra, scores[i].data(),
                        out.data() + i * hd});
        attend_many(qs, keys.data(), values.data(), hd, 0.2f);
        for (std::size_t i = 0; i < qc.size(); ++i) {
          std::vector<float> sc(slots + 8);
          attend_rows(q.data() + i * hd, keys.data(), values.data(), qc[i].first, qc[i].count,
                      qc[i].extra, hd, 0.2f, sc.data(), want.data() + i * hd);
        }
        INFO("hd " << hd << " case " << ci << " isa " << int(isa));
        CHECK(std::memcmp(out.data(), want.data(), out.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("attend: the scalar kernel matches a double reference", "[kernels]") {
  IsaGuard guard;
  for (std::size_t hd : {1, 17, 64, 80, 128}) {
    for (std::size_t len : {1, 2, 9, 73}) {
      INFO("hd " << hd << " len " << len);
      const auto q = random_vec(hd, hd + len), keys = random_vec(len * hd, 3 * len + hd),
                 values = random_vec(len * hd, 5 * len + hd);
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> scores(len), out_scalar(hd, 7.0f);
      set_isa(Isa::scalar);
      attend(q.data(), keys.data(), values.data(), len, hd, scale, scores.data(),
             out_scalar.data());
      // Reference: softmax attention in double.
      std::vector<double> s(len);
      double mx = -1e300, z = 0;
      for (std::size_t j = 0; j < len; ++j) {
        double d = 0;
        for (std::size_t e = 0; e < hd; ++e) d += static_cast<double>(q[e]) * keys[j * hd + e];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      for (auto& v : s) z += (v = std::exp(v - mx));
      for (std::size_t e = 0; e < hd; ++e) {
        double ref = 0, mag = 0;
        for (std::size_t j = 0; j < len; ++j)
          ref += s[j] / z * values[j * hd + e], mag += s[j] / z * std::abs(values[j * hd + e]);
        CHECK(std::abs(out_scalar[e] - ref) <= 1e-5 * (mag + 1));
      }
    }
  }
}

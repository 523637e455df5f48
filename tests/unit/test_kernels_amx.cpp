// The AMX matmul path (src/cpu/matmul_amx.cpp, private: included by path)
// against its scalar reference Isa::scalar_amx, bit for bit: bf16 in the
// order kernels.hpp defines for AMX (per 32-k tile an even and an odd chain,
// then acc + (even + odd), denormals flushed), int8 the exact int32 dot and
// the shared epilogue. Also: int8 on AMX gives the AVX-512 path's bits, the
// AMX path is batch-invariant across its 16-row tile blocks (m = 1..40, one
// and two threads), and the reference meets the double-precision bounds of
// test_kernels.cpp. Cases that need AMX skip visibly on CPUs without it (or
// where Linux refused the tile state).
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../../src/cpu/kernels.hpp"
#include "test_skip.hpp"

using namespace assistgen::cpu::detail;

namespace {

std::vector<float> random_vec(std::size_t n, std::uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 eng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& e : v) e = d(eng);
  return v;
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
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

// Index of the first element whose bits differ (n if none), for messages.
std::size_t first_diff(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return i;
  return a.size();
}

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_isa(saved); }
};

#define SKIP_WITHOUT_AMX()                                                         \
  if (!isa_available(Isa::amx))                                                    \
  ASSISTGEN_SKIP(                                                                  \
      "no AMX (AMX-TILE/BF16/INT8) on this CPU, or Linux refused the tile state: " \
      "the AMX kernels were not run")

// Values of every size, with some the kernels must flush or round: bf16
// denormals, products that underflow, large and cancelling terms.
std::vector<float> hard_values(std::size_t n, std::uint64_t seed) {
  auto v = random_vec(n, seed);
  std::mt19937_64 eng(seed + 1);
  std::uniform_int_distribution<int> e(-60, 20), pick(0, 9);
  for (auto& x : v) {
    const int kind = pick(eng);
    if (kind == 0) x = std::ldexp(x, e(eng));
    if (kind == 1) x = std::ldexp(x, -128);  // a denormal (zero once flushed)
    if (kind == 2) x = std::ldexp(x, 10);
  }
  return v;
}

// Under ASan/TSan the scalar reference is 20-50x slower: the large shape then
// runs a few row counts (one tile row, a full block, a ragged block) instead
// of all of them, which keeps the sanitizer stage of CI within its time.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

bool sanitized_skip(std::size_t n, std::size_t m) {
  return kSanitized && n >= 1000 && m != 1 && m != 16 && m != 33;
}

}  // namespace

TEST_CASE("AMX matmul kernels give the bits of their scalar reference", "[kernels][amx]") {
  SKIP_WITHOUT_AMX();
  IsaGuard guard;
  const WeightType type =
      GENERATE(WeightType::bf16, WeightType::i8, WeightType::f32, WeightType::bf16_f32);
  const bool hard = GENERATE(false, true);
  for (auto [n, k] :
       {std::pair<std::size_t, std::size_t>{1, 1}, {33, 7}, {32, 64}, {100, 257}, {1000, 1100}}) {
    const auto w = hard ? hard_values(n * k, n + k) : random_vec(n * k, n * 1000 + k, 0.05f);
    const auto b = random_vec(n, 7, 0.1f);
    const PackedLinear p = pack_linear(type, w.data(), n, k, b.data());
    for (std::size_t m : {1, 2, 5, 15, 16, 17, 31, 32, 33, 40, 49, 64, 65, 70}) {
      if (sanitized_skip(n, m)) continue;
      const auto x = hard ? hard_values(m * k, m + 3 * k) : random_vec(m * k, k + 3);
      INFO("type " << static_cast<int>(type) << " hard " << hard << " n " << n << " k " << k
                   << " m " << m);
      set_isa(Isa::amx);
      REQUIRE(active_isa() == Isa::amx);
      const auto amx = run(p, x, m, 2);
      set_isa(Isa::scalar_amx);
      const auto ref = run(p, x, m, 1);
      const std::size_t d = first_diff(amx, ref);
      INFO("first difference at " << d << ": amx " << (d < amx.size() ? amx[d] : 0.0f)
                                  << " reference " << (d < ref.size() ? ref[d] : 0.0f));
      REQUIRE(d == amx.size());
    }
  }
}

TEST_CASE("int8 on AMX gives the bits of the AVX-512 and scalar paths", "[kernels][amx]") {
  SKIP_WITHOUT_AMX();
  IsaGuard guard;
  const std::size_t n = 300, k = 1000;
  const auto w = random_vec(n * k, 31, 0.05f);
  const auto b = random_vec(n, 32, 0.1f);
  const PackedLinear p = pack_linear(WeightType::i8, w.data(), n, k, b.data());
  for (std::size_t m : {1, 9, 17, 40, 50}) {
    INFO("m " << m);
    const auto x = random_vec(m * k, 33 + m);
    set_isa(Isa::amx);
    const auto amx = run(p, x, m, 2);
    set_isa(Isa::avx512);
    const auto avx = run(p, x, m, 2);
    set_isa(Isa::scalar);
    const auto scalar = run(p, x, m, 1);
    REQUIRE(same_bits(amx.data(), avx.data(), amx.size()));
    REQUIRE(same_bits(amx.data(), scalar.data(), amx.size()));
  }
}

TEST_CASE("AMX kernels are batch-invariant across tile blocks, calls and threads",
          "[kernels][amx][invariance]") {
  SKIP_WITHOUT_AMX();
  IsaGuard guard;
  set_isa(Isa::amx);
  const WeightType type = GENERATE(WeightType::bf16, WeightType::i8);
  INFO("type " << static_cast<int>(type));
  // Up to 70 rows: one block, two, three and four (one pass over the
  // weights), then five (pairs of blocks, the weights from L2).
  const std::size_t n = 1000, k = 1100, max_m = 70;
  const auto w = random_vec(n * k, 41, 0.05f);
  const auto b = random_vec(n, 42, 0.1f);
  const auto x = random_vec(max_m * k, 43);
  const PackedLinear p = pack_linear(type, w.data(), n, k, b.data());
  const auto all = run(p, x, max_m, 2);
  for (std::size_t m = 1; m <= max_m; ++m) {
    if (sanitized_skip(n, m) && m % 8 != 7) continue;
    // Rows [max_m - m, max_m) computed in a call of m rows.
    const std::vector<float> xs(x.begin() + static_cast<std::ptrdiff_t>((max_m - m) * k), x.end());
    for (int threads : {1, 2}) {
      INFO("m " << m << " threads " << threads);
      const auto y = run(p, xs, m, threads);
      REQUIRE(same_bits(y.data(), all.data() + (max_m - m) * n, m * n));
    }
  }
}

TEST_CASE("the AMX order's scalar reference: exact sums where the order cannot matter",
          "[kernels]") {
  // Runs everywhere (scalar_amx is portable). With small integers every sum
  // is exact, so the result is the exact dot product whatever the order.
  IsaGuard guard;
  set_isa(Isa::scalar_amx);
  REQUIRE(active_isa() == Isa::scalar_amx);
  const std::size_t n = 40, k = 70, m = 3;
  std::vector<float> w(n * k), x(m * k), b(n);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 7) - 3);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 5) - 2);
  for (std::size_t j = 0; j < n; ++j) b[j] = 0.5f * static_cast<float>(j);
  const PackedLinear p = pack_linear(WeightType::bf16, w.data(), n, k, b.data());
  CHECK(p.k_pad == 96);  // whole tiles of 32
  const auto y = run(p, x, m);
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t j = 0; j < n; ++j) {
      double ref = b[j];
      for (std::size_t kk = 0; kk < k; ++kk) ref += double(x[r * k + kk]) * w[j * k + kk];
      REQUIRE(y[r * n + j] == static_cast<float>(ref));
    }
  // And one case where it does: per tile, acc + (even + odd) keeps what a
  // single chain over the pairs rounds away (1 + 2^-24 + 2^-24).
  std::vector<float> w1(32, 0.0f), x1(32, 0.0f);
  w1[0] = 1.0f, x1[0] = 1.0f;          // even chain: 1
  w1[1] = 0x1p-12f, x1[1] = 0x1p-12f;  // odd chain: 2^-24
  w1[3] = 0x1p-12f, x1[3] = 0x1p-12f;  // odd chain: 2^-23
  const PackedLinear p1 = pack_linear(WeightType::bf16, w1.data(), 1, 32, nullptr);
  CHECK(run(p1, x1, 1)[0] == 1.0f + 0x1p-23f);
  set_isa(Isa::scalar);  // VDPBF16PS's order: (1 + 2^-24) rounds to 1, twice
  CHECK(run(p1, x1, 1)[0] == 1.0f);
}

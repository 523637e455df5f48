// Logits processors (HF semantics), the chain, softmax / argmax / categorical
// sampling and the portable RNG.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
}

TEST_CASE("Rng: same seed same stream, uniform in 0 to 1 (1 excluded), portable first values", "[sampling]") {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const double x = a.uniform();
    REQUIRE(x == b.uniform());
    REQUIRE(x >= 0.0);
    REQUIRE(x < 1.0);
    differs |= x != c.uniform();
  }
  REQUIRE(differs);
  // The stream is fixed by SplitMix64 (the seed scrambler), the standard's
  // mt19937_64 and our bit mapping: pinned as literals, so that a change of
  // any of them is noticed. The values come from an independent Python
  // implementation of SplitMix64 and MT19937-64 (checked against the
  // standard's 10000th output for the default seed), not from this library.
  REQUIRE(Rng::splitmix64(0) == 0xe220a8397b1dcdafull);
  REQUIRE(Rng::splitmix64(7) == 0x63cbe1e459320dd7ull);
  Rng r(0);
  REQUIRE(r.bits() == 0xe472a21d82b9e8c8ull);
  REQUIRE(r.uniform() == 0x1.d924a6db7517cp-1);  // (0xec92536dba8be242 >> 11) * 2^-53
  REQUIRE(r.bits() == 0xc63899882968e434ull);
  r.reseed(7);
  Rng s(7);
  REQUIRE(r.uniform() == s.uniform());
}

TEST_CASE("sample_categorical: the tokens a fixed seed draws are pinned", "[sampling]") {
  // Twenty draws from seed 5, computed by the same independent Python code
  // (inverse CDF in double over the float weights, zero weights skipped): a
  // change of the RNG stream, of the uniform mapping or of the inverse-CDF
  // walk changes these tokens.
  const std::vector<float> w{0.1f, 0.0f, 0.3f, 0.05f, 0.25f, 0.2f, 0.1f, 0.0f};
  Rng rng(5);
  std::vector<Token> got;
  for (int i = 0; i < 20; ++i) got.push_back(sample_categorical(w, rng));
  REQUIRE(got == std::vector<Token>{5, 3, 4, 2, 3, 2, 5, 4, 2, 4, 0, 4, 5, 5, 5, 5, 2, 5, 2, 3});
}

TEST_CASE("Rng: uniform mean and variance", "[sampling]") {
  Rng r(1);
  const int n = 200000;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const double x = r.uniform();
    sum += x;
    sq += x * x;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Standard error of the mean: sqrt(1/12/n) ~ 6.5e-4; of the sample
  // variance: sqrt((mu4 - sigma^4) / n) with mu4 = 1/80, sigma^4 = 1/144,
  // ~ 1.67e-4. Both allowed 5 sigma (two-sided p ~ 6e-7 each).
  REQUIRE_THAT(mean, WithinAbs(0.5, 5 * 6.46e-4));
  REQUIRE_THAT(var, WithinAbs(1.0 / 12.0, 5 * 1.67e-4));
}

TEST_CASE("argmax: lowest index wins ties, all -inf is an error", "[sampling]") {
  std::vector<float> x{1.0f, 3.0f, 3.0f, -kInf};
  REQUIRE(argmax(x) == 1);
  std::vector<float> m{-kInf, -kInf};
  REQUIRE_THROWS_AS(argmax(m), InvalidArgument);
}

TEST_CASE("softmax: normalised, masked entries exactly zero, shift invariant", "[sampling]") {
  std::vector<float> x{0.5f, -kInf, 2.0f, 1.0f}, p(4);
  softmax(x, p);
  REQUIRE(p[1] == 0.0f);
  REQUIRE(argmax(p) == 2);
  static_assert(std::is_void_v<decltype(softmax(x, p))>, "softmax normalises; argmax chooses");
  REQUIRE_THAT(p[0] + p[2] + p[3], WithinAbs(1.0, 1e-6));
  const double z = std::exp(0.5) + std::exp(2.0) + std::exp(1.0);
  REQUIRE_THAT(p[2], WithinRel(std::exp(2.0) / z, 1e-6));
  std::vector<float> big{1000.5f, -kInf, 1002.0f, 1001.0f};
  softmax_inplace(big);
  for (int i = 0; i < 4; ++i) REQUIRE_THAT(big[i], WithinAbs(p[i], 1e-6));
  REQUIRE_THAT(softmax_prob(x, 3), WithinRel(std::exp(1.0) / z, 1e-6));
}

TEST_CASE("sample_categorical follows the weights (chi-square, 1e5 draws)", "[sampling]") {
  std::vector<float> w{0.1f, 0.0f, 0.3f, 0.05f, 0.25f, 0.2f, 0.1f, 0.0f};
  std::vector<double> p(w.begin(), w.end());
  Rng rng(5);
  std::vector<std::size_t> counts(w.size());
  for (int i = 0; i < 100000; ++i) ++counts[static_cast<std::size_t>(sample_categorical(w, rng))];
  const auto cs = toy::chi_square(counts, p);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  // Unnormalised weights give the same draws from the same stream.
  std::vector<float> w2(w);
  for (float& v : w2) v *= 4.0f;
  Rng r1(9), r2(9);
  for (int i = 0; i < 100; ++i) REQUIRE(sample_categorical(w, r1) == sample_categorical(w2, r2));
  std::vector<float> zero(3, 0.0f);
  REQUIRE_THROWS_AS(sample_categorical(zero, rng), InvalidArgument);
}

TEST_CASE("temperature divides the logits", "[sampling]") {
  std::vector<float> x{1.0f, -2.0f, 0.0f};
  TemperatureProcessor t(2.0f);
  t.apply(x, {});
  REQUIRE(x == std::vector<float>{0.5f, -1.0f, 0.0f});
  REQUIRE_THROWS_AS(TemperatureProcessor(0.0f), InvalidArgument);
  REQUIRE_THROWS_AS(TemperatureProcessor(-1.0f), InvalidArgument);
}

TEST_CASE("top-k keeps the k largest and their ties", "[sampling]") {
  std::vector<float> x{0.1f, 0.9f, 0.5f, 0.5f, -1.0f};
  TopKProcessor k2(2);
  auto y = x;
  k2.apply(y, {});
  REQUIRE(y == std::vector<float>{-kInf, 0.9f, 0.5f, 0.5f, -kInf});  // tie with the 2nd kept, as HF
  TopKProcessor k1(1);
  y = x;
  k1.apply(y, {});
  REQUIRE(y == std::vector<float>{-kInf, 0.9f, -kInf, -kInf, -kInf});
  TopKProcessor k9(9);
  y = x;
  k9.apply(y, {});
  REQUIRE(y == x);
}

TEST_CASE("top-k masks exactly what the k-th largest of a sorted copy says", "[sampling]") {
  // Random rows with many ties and masked entries, every k from 1 to the
  // width: the heap that finds the k-th largest against a full sort.
  std::mt19937 eng(3);
  for (int row = 0; row < 300; ++row) {
    const std::size_t n = 1 + eng() % 300;
    std::vector<float> x(n);
    for (float& v : x) {
      const unsigned r = eng() % 10;
      v = r == 0 ? -kInf : static_cast<float>(static_cast<int>(eng() % 40) - 20) * 0.25f;
    }
    std::vector<float> sorted = x;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    std::size_t wrong = 0;
    for (std::size_t k = 1; k <= n + 1; ++k) {
      auto y = x;
      TopKProcessor(k).apply(y, {});
      const float kth = k >= n ? -kInf : sorted[k - 1];
      for (std::size_t i = 0; i < n; ++i) wrong += y[i] != (x[i] < kth ? -kInf : x[i]);
    }
    INFO("row " << row << " of " << n);
    REQUIRE(wrong == 0);
  }
}

TEST_CASE("softmax and softmax_prob give masked entries 0 and others what exp gives",
          "[sampling]") {
  const std::vector<float> x{1.5f, -kInf, 0.25f, -kInf, -3.0f, 1.5f};
  std::vector<float> p(x.size());
  softmax(x, p);
  float sum = 0.0f;
  for (const float v : x) sum += std::exp(v - 1.5f);
  for (std::size_t i = 0; i < x.size(); ++i) {
    REQUIRE(p[i] == std::exp(x[i] - 1.5f) * (1.0f / sum));
    if (x[i] != -kInf)
      REQUIRE(softmax_prob(x, static_cast<Token>(i)) == std::exp(x[i] - 1.5f) / sum);
  }
}

TEST_CASE("top-p keeps the smallest top set whose mass reaches p", "[sampling]") {
  // probabilities 0.5, 0.25, 0.15, 0.1
  std::vector<float> base{std::log(0.5f), std::log(0.25f), std::log(0.15f), std::log(0.1f)};
  auto run = [&](float p) {
    auto y = base;
    TopPProcessor(p).apply(y, {});
    std::size_t kept = 0;
    for (float v : y) kept += v != -kInf;
    return kept;
  };
  REQUIRE(run(0.3f) == 1);
  REQUIRE(run(0.49f) == 1);  // mass before the 2nd token is 0.5 >= 0.49: dropped
  REQUIRE(run(0.51f) == 2);
  REQUIRE(run(0.6f) == 2);
  REQUIRE(run(0.8f) == 3);
  REQUIRE(run(0.95f) == 4);
  REQUIRE(run(1.0f) == 4);
  // Order in the vocabulary does not matter and masked entries stay masked.
  std::vector<float> y{std::log(0.1f), -kInf, std::log(0.5f), std::log(0.25f), std::log(0.15f)};
  TopPProcessor(0.6f).apply(y, {});
  REQUIRE(y[0] == -kInf);
  REQUIRE(y[1] == -kInf);
  REQUIRE(y[2] != -kInf);
  REQUIRE(y[3] != -kInf);
  REQUIRE(y[4] == -kInf);
  REQUIRE_THROWS_AS(TopPProcessor(0.0f), InvalidArgument);
  REQUIRE_THROWS_AS(TopPProcessor(1.5f), InvalidArgument);
}

TEST_CASE("min-p masks tokens below min_p times the top probability", "[sampling]") {
  std::vector<float> y{std::log(0.5f), std::log(0.26f), std::log(0.24f), std::log(0.0f + 1e-3f)};
  MinPProcessor(0.5f).apply(y, {});  // cut at 0.25
  REQUIRE(y[0] != -kInf);
  REQUIRE(y[1] != -kInf);
  REQUIRE(y[2] == -kInf);
  REQUIRE(y[3] == -kInf);
  REQUIRE_THROWS_AS(MinPProcessor(1.5f), InvalidArgument);
}

TEST_CASE("repetition penalty: HF semantics over the history, once per token", "[sampling]") {
  std::vector<float> y{2.0f, -2.0f, 1.0f, -1.0f, 0.0f};
  const std::vector<Token> history{0, 1, 1, 4, 0};
  RepetitionPenaltyProcessor rp(2.0f);
  rp.apply(y, history);
  REQUIRE(y == std::vector<float>{1.0f, -4.0f, 1.0f, -1.0f, 0.0f});
  // No state leaks between calls: a second row with another history.
  std::vector<float> z{2.0f, -2.0f, 1.0f, -1.0f, 0.0f};
  const std::vector<Token> h2{3};
  rp.apply(z, h2);
  REQUIRE(z == std::vector<float>{2.0f, -2.0f, 1.0f, -2.0f, 0.0f});
}

TEST_CASE("suppress tokens masks them", "[sampling]") {
  std::vector<float> y{1, 2, 3, 4};
  SuppressTokensProcessor({1, 3, 99}).apply(y, {});
  REQUIRE(y == std::vector<float>{1, -kInf, 3, -kInf});
}

TEST_CASE("chain: order, ownership, clone independence", "[sampling]") {
  GenerationConfig cfg{.do_sample = true,
                       .temperature = 0.5f,
                       .top_k = 2,
                       .repetition_penalty = 2.0f,
                       .suppress_tokens = {3}};
  LogitsProcessorChain chain = make_processor_chain(cfg);
  REQUIRE(chain.size() == 4);
  std::vector<float> y{1.0f, 4.0f, 2.0f, 5.0f};
  const std::vector<Token> hist{1};
  chain.apply(y, hist);
  // penalty: 4 -> 2; suppress 3; temperature: x2; top-2 of {2, 4, 4} keeps 4, 4 (ties)
  REQUIRE(y == std::vector<float>{-kInf, 4.0f, 4.0f, -kInf});
  LogitsProcessorChain copy = chain;
  REQUIRE(copy.size() == chain.size());
  std::vector<float> a{1.0f, 4.0f, 2.0f, 5.0f}, b = a;
  copy.apply(a, hist);
  chain.apply(b, hist);
  REQUIRE(a == b);
  chain.reset();

  // Greedy: only the processors that change which token is chosen.
  GenerationConfig greedy = cfg;
  greedy.do_sample = false;
  REQUIRE(make_processor_chain(greedy).size() == 2);
  REQUIRE(make_processor_chain(GenerationConfig{}).empty());
}

TEST_CASE("sampling options are validated with the option's name", "[sampling]") {
  auto msg = [](GenerationConfig c) {
    try {
      validate_sampling_options(c, 10);
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  REQUIRE_THAT(msg({.do_sample = true, .temperature = 0.0f}), Catch::Contains("temperature"));
  REQUIRE(msg({.do_sample = false, .temperature = 0.0f}).empty());
  REQUIRE_THAT(msg({.top_p = 0.0f}), Catch::Contains("top_p"));
  REQUIRE_THAT(msg({.min_p = -0.1f}), Catch::Contains("min_p"));
  REQUIRE_THAT(msg({.repetition_penalty = 0.0f}), Catch::Contains("repetition_penalty"));
  REQUIRE_THAT(msg({.suppress_tokens = {10}}), Catch::Contains("suppress_tokens: token 10"));
  REQUIRE_THAT(msg({.eos_token_ids = {-1}}), Catch::Contains("eos_token_ids"));
}

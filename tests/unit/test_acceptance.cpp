// Acceptance math on fixed distributions: greedy prefix matching, the
// accept / reject rule, the residual distribution, and (statistically) that
// speculative rejection sampling emits tokens distributed exactly as p,
// whatever q is. Chi-square tests at significance 0.001 with the critical
// value from the Wilson-Hilferty approximation (toy_models.hpp).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "assistgen/acceptance.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "unit/toy_models.hpp"

using namespace assistgen;

namespace {

std::vector<float> normalised(std::vector<float> w) {
  const float s = std::accumulate(w.begin(), w.end(), 0.0f);
  for (float& x : w) x /= s;
  return w;
}

/// Emits two tokens by repeated speculative rounds with position-independent
/// p and q (q empty: the candidates are the fixed token `fixed`, one-hot q).
/// Each round drafts K tokens from q, verifies them, and emits the accepted
/// drafts plus the next token.
std::pair<Token, Token> emit_two(const std::vector<float>& p, const std::vector<float>& q,
                                 std::size_t k, Token fixed, Rng& rng, std::vector<Token>& drafts) {
  std::vector<Token> out;
  while (out.size() < 2) {
    drafts.clear();
    for (std::size_t i = 0; i < k; ++i)
      drafts.push_back(q.empty() ? fixed : sample_categorical(q, rng));
    const Verdict v = verify_sampling(
        drafts, [&](std::size_t) { return std::span<const float>(p); },
        [&](std::size_t) { return std::span<const float>(q); }, rng);
    for (std::size_t i = 0; i < v.accepted; ++i) out.push_back(drafts[i]);
    out.push_back(v.next);
  }
  return {out[0], out[1]};
}

void check_emits_p(const std::vector<float>& p, const std::vector<float>& q, std::size_t k,
                   Token fixed = 0) {
  Rng rng(1234 + k);
  std::vector<std::size_t> first(p.size()), second(p.size());
  std::vector<Token> drafts;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const auto [a, b] = emit_two(p, q, k, fixed, rng, drafts);
    ++first[static_cast<std::size_t>(a)];
    ++second[static_cast<std::size_t>(b)];
  }
  const std::vector<double> pd(p.begin(), p.end());
  for (const auto* counts : {&first, &second}) {
    const auto cs = toy::chi_square(*counts, pd);
    INFO("chi2 " << cs.statistic << " df " << cs.df << " critical "
                 << toy::chi2_critical_001(cs.df));
    REQUIRE(cs.impossible == 0);
    REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));
  }
}

const std::vector<float> kP = normalised({5, 1, 0, 3, 8, 2, 0.5f, 4, 1, 6, 2, 3});
const std::vector<float> kQ = normalised({1, 6, 2, 3, 2, 1, 4, 0.5f, 5, 1, 3, 2});

}  // namespace

TEST_CASE("greedy verification: longest matching prefix, then the target's token", "[acceptance]") {
  const std::vector<Token> argmaxes{4, 7, 2, 9};
  std::size_t requested = 0;
  auto target = [&](std::size_t j) {
    requested = std::max(requested, j + 1);
    return argmaxes[j];
  };
  std::vector<Token> all{4, 7, 2};
  Verdict v = verify_greedy(all, target);
  REQUIRE(v.accepted == 3);
  REQUIRE(v.next == 9);  // bonus

  requested = 0;
  std::vector<Token> miss{4, 5, 2};
  v = verify_greedy(miss, target);
  REQUIRE(v.accepted == 1);
  REQUIRE(v.next == 7);
  REQUIRE(requested == 2);  // rows after the mismatch are never processed

  v = verify_greedy(std::span<const Token>(), target);
  REQUIRE(v.accepted == 0);
  REQUIRE(v.next == 4);
}

TEST_CASE("accept rule: min(1, p/q)", "[acceptance]") {
  Rng rng(3);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(accept_draft_token(0.3f, 0.2f, rng));
    REQUIRE(accept_draft_token(0.3f, 0.3f, rng));
    REQUIRE(accept_draft_token(0.1f, 0.0f, rng));
    REQUIRE_FALSE(accept_draft_token(0.0f, 0.5f, rng));
  }
  int accepted = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) accepted += accept_draft_token(0.2f, 0.5f, rng);
  // Binomial(n, 0.4): sd = sqrt(n * 0.24) ~ 219; allow 5 sd.
  REQUIRE(std::abs(accepted - 0.4 * n) < 5 * 219.0);
}

TEST_CASE("residual distribution is normalize(max(0, p - q)), one-hot q drops the drafted token",
          "[acceptance]") {
  Rng rng(11);
  std::vector<double> expected(kP.size());
  double z = 0;
  for (std::size_t i = 0; i < kP.size(); ++i)
    z += expected[i] = std::max(0.0, double(kP[i]) - double(kQ[i]));
  for (auto& e : expected) e /= z;
  std::vector<std::size_t> counts(kP.size());
  for (int i = 0; i < 100000; ++i)
    ++counts[static_cast<std::size_t>(sample_residual(kP, kQ, 1, rng))];
  auto cs = toy::chi_square(counts, expected);
  REQUIRE(cs.impossible == 0);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));

  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < 100000; ++i)
    ++counts[static_cast<std::size_t>(sample_residual(kP, std::span<const float>(), 4, rng))];
  REQUIRE(counts[4] == 0);
  std::vector<double> expected_onehot(kP.begin(), kP.end());
  expected_onehot[4] = 0;
  z = std::accumulate(expected_onehot.begin(), expected_onehot.end(), 0.0);
  for (auto& e : expected_onehot) e /= z;
  cs = toy::chi_square(counts, expected_onehot);
  REQUIRE(cs.statistic < toy::chi2_critical_001(cs.df));

  // p == q leaves no residual mass: falls back to p instead of failing.
  REQUIRE_NOTHROW(sample_residual(kP, kP, 0, rng));
}

TEST_CASE("verify_sampling stops requesting rows at the first rejection", "[acceptance]") {
  // p puts no mass on token 0, the draft always proposes 0: always rejected.
  std::vector<float> p = normalised({0, 1, 1, 1}), q = normalised({1, 0, 0, 0});
  std::vector<Token> drafts{0, 0, 0};
  Rng rng(1);
  std::size_t requested = 0;
  const Verdict v = verify_sampling(
      drafts,
      [&](std::size_t j) {
        requested = std::max(requested, j + 1);
        return std::span<const float>(p);
      },
      [&](std::size_t) { return std::span<const float>(q); }, rng);
  REQUIRE(v.accepted == 0);
  REQUIRE(v.next != 0);
  REQUIRE(requested == 1);
}

TEST_CASE("speculative sampling emits p: q == p", "[acceptance][statistical]") {
  check_emits_p(kP, kP, 3);
}

TEST_CASE("speculative sampling emits p: q != p, K = 1 and K = 4", "[acceptance][statistical]") {
  check_emits_p(kP, kQ, 1);
  check_emits_p(kP, kQ, 4);
}

TEST_CASE("speculative sampling emits p: one-hot q (candidates without a distribution)",
          "[acceptance][statistical]") {
  check_emits_p(kP, {}, 3, /*fixed=*/4);  // a likely token
  check_emits_p(kP, {}, 2, /*fixed=*/2);  // a token p never emits
}

TEST_CASE("speculative sampling emits p: q zero where p > 0, q > 0 where p is zero",
          "[acceptance][statistical]") {
  const std::vector<float> q = normalised({0, 0, 5, 3, 0, 2, 7, 0, 1, 0, 2, 4});
  check_emits_p(kP, q, 3);
}

TEST_CASE("speculative sampling emits processed p: temperature, top-k, top-p on both",
          "[acceptance][statistical]") {
  // Logits -> the same processing for both -> probabilities, as the decoder does.
  std::vector<float> lp(kP.size()), lq(kQ.size());
  for (std::size_t i = 0; i < kP.size(); ++i) {
    lp[i] = std::log(kP[i] > 0 ? kP[i] : 1e-30f);
    lq[i] = std::log(kQ[i]);
  }
  GenerationConfig cfg{.do_sample = true, .temperature = 1.5f, .top_k = 8, .top_p = 0.9f};
  LogitsProcessorChain chain = make_processor_chain(cfg);
  chain.apply(lp, {});
  chain.apply(lq, {});
  std::vector<float> p(lp.size()), q(lq.size());
  softmax(lp, p);
  softmax(lq, q);
  REQUIRE(std::count(p.begin(), p.end(), 0.0f) >= 4);  // top-k/top-p really masked something
  check_emits_p(p, q, 3);
}

// Toy CausalLM backends for the decoding tests: the logits of a position are
// an explicit function of the tokens before it, and the cache keeps the token
// ids it holds, so tests can check exactly what every cache contains after a
// round. They follow the backend contract (InvalidArgument for bad ids or
// empty input, CapacityError when full, cache unchanged on error).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"
#include "assistgen/types.hpp"

namespace toy {

using assistgen::Logits;
using assistgen::Token;

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// A cache that remembers the tokens it holds.
struct ToyCache {
  std::vector<Token> tokens;
  std::size_t cap = 0;

  std::size_t size() const { return tokens.size(); }
  std::size_t capacity() const { return cap; }
  void truncate(std::size_t n) {
    if (n > tokens.size())
      throw assistgen::InvalidArgument("ToyCache::truncate(" + std::to_string(n) +
                                       ") beyond size " + std::to_string(tokens.size()));
    tokens.resize(n);
  }
  ToyCache clone() const { return *this; }
};

/// logits(row) = fn(history including the token of that row).
class FnModel {
 public:
  using Cache = ToyCache;
  using Fn = std::function<void(std::span<const Token> history, std::span<float> row)>;

  FnModel(std::size_t vocab, Fn fn) : vocab_(vocab), fn_(std::move(fn)) {}

  std::size_t vocab_size() const { return vocab_; }
  Cache make_cache(std::size_t capacity) const {
    Cache c;
    c.cap = capacity;
    c.tokens.reserve(capacity);
    return c;
  }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    if (tokens.empty()) throw assistgen::InvalidArgument("FnModel::forward: empty input");
    for (Token t : tokens)
      if (t < 0 || static_cast<std::size_t>(t) >= vocab_)
        throw assistgen::InvalidArgument("FnModel::forward: token " + std::to_string(t) +
                                         " out of range");
    if (cache.tokens.size() + tokens.size() > cache.cap)
      throw assistgen::CapacityError("FnModel::forward: cache full");
    Logits out(tokens.size(), vocab_);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      cache.tokens.push_back(tokens[i]);
      fn_(cache.tokens, out.row(i));
    }
    ++calls_;
    fed_ += tokens.size();
    return out;
  }

  std::size_t calls() const { return calls_; }
  std::size_t tokens_fed() const { return fed_; }
  void reset_counters() const { calls_ = fed_ = 0; }

 private:
  std::size_t vocab_;
  Fn fn_;
  mutable std::size_t calls_ = 0;
  mutable std::size_t fed_ = 0;
};

static_assert(assistgen::CausalLM<FnModel>);

/// Logits independent of the context.
inline FnModel fixed_model(std::vector<float> logits) {
  const std::size_t v = logits.size();
  return FnModel(v, [logits = std::move(logits)](std::span<const Token>, std::span<float> row) {
    std::copy(logits.begin(), logits.end(), row.begin());
  });
}

/// Logits = table[last token] (table is vocab x vocab, row-major).
inline FnModel table_model(std::size_t vocab, std::vector<float> table) {
  return FnModel(vocab,
                 [vocab, table = std::move(table)](std::span<const Token> h, std::span<float> row) {
                   const auto* src = table.data() + static_cast<std::size_t>(h.back()) * vocab;
                   std::copy(src, src + vocab, row.begin());
                 });
}

inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// A v x v table of pseudo-random logits in [-scale, scale) from `seed`
/// (for table_model: row = the previous token).
inline std::vector<float> random_table(std::uint64_t seed, std::size_t v, float scale) {
  std::vector<float> t(v * v);
  std::uint64_t s = seed;
  for (float& x : t) {
    s = mix64(s);
    x = static_cast<float>(((s >> 11) * 0x1.0p-53 * 2.0 - 1.0) * scale);
  }
  return t;
}

/// Pseudo-random logits in [-3, 3) from the last two tokens and a seed.
inline void hash_logits(std::span<const Token> h, std::uint64_t seed, std::span<float> row) {
  const std::uint64_t a = static_cast<std::uint64_t>(h.back());
  const std::uint64_t b = h.size() > 1 ? static_cast<std::uint64_t>(h[h.size() - 2]) : 977;
  std::uint64_t s = mix64(seed * 1000003ull + a * 7919ull + b);
  for (float& x : row) {
    s = mix64(s);
    x = static_cast<float>((s >> 11) * 0x1.0p-53 * 6.0 - 3.0);
  }
}

inline FnModel hash_model(std::size_t vocab, std::uint64_t seed) {
  return FnModel(
      vocab, [seed](std::span<const Token> h, std::span<float> row) { hash_logits(h, seed, row); });
}

/// Agrees with hash_model(vocab, seed) on roughly `agree_percent`% of contexts.
inline FnModel partial_model(std::size_t vocab, std::uint64_t seed, std::uint64_t other_seed,
                             int agree_percent) {
  return FnModel(vocab, [=](std::span<const Token> h, std::span<float> row) {
    const std::uint64_t key = mix64(static_cast<std::uint64_t>(h.back()) * 31 + h.size());
    hash_logits(h, static_cast<int>(key % 100) < agree_percent ? seed : other_seed, row);
  });
}

/// Puts all the mass on `next(history)`: logits 0 there, -10 elsewhere.
inline FnModel script_model(std::size_t vocab, std::function<Token(std::span<const Token>)> next) {
  return FnModel(vocab, [next = std::move(next)](std::span<const Token> h, std::span<float> row) {
    std::fill(row.begin(), row.end(), -10.0f);
    row[static_cast<std::size_t>(next(h))] = 0.0f;
  });
}

/// Chi-square critical value for `df` degrees of freedom at significance
/// 0.001, by the Wilson-Hilferty approximation
/// chi2 ~ df * (1 - 2/(9 df) + z sqrt(2/(9 df)))^3 with z = Phi^-1(0.999);
/// it slightly overestimates the exact value (about 3% at df = 1, under 1%
/// from df = 7 on), which only makes the tests a little more lenient.
inline double chi2_critical_001(std::size_t df) {
  const double z = 3.090232306167813;
  const double d = static_cast<double>(df);
  const double c = 2.0 / (9.0 * d);
  const double t = 1.0 - c + z * std::sqrt(c);
  return d * t * t * t;
}

/// Pearson chi-square statistic of `observed` counts against `expected`
/// probabilities. Cells with expected count below 5 are pooled into one cell
/// (the approximation needs it); a cell with probability exactly 0 must have
/// no observations, else `impossible` is set. Returns {statistic, df}.
struct ChiSquare {
  double statistic = 0.0;
  std::size_t df = 0;
  std::size_t impossible = 0;
};
inline ChiSquare chi_square(const std::vector<std::size_t>& observed,
                            const std::vector<double>& expected_p) {
  ChiSquare r;
  double n = 0.0;
  for (auto o : observed) n += static_cast<double>(o);
  double pool_e = 0.0, pool_o = 0.0;
  std::size_t cells = 0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    const double e = expected_p[i] * n;
    const double o = static_cast<double>(observed[i]);
    if (expected_p[i] <= 0.0) {
      r.impossible += observed[i];
      continue;
    }
    if (e < 5.0) {
      pool_e += e;
      pool_o += o;
      continue;
    }
    r.statistic += (o - e) * (o - e) / e;
    ++cells;
  }
  if (pool_e > 0.0) {
    r.statistic += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
    ++cells;
  }
  r.df = cells > 1 ? cells - 1 : 1;
  return r;
}

}  // namespace toy

// A complete assistgen backend in one header: an n-gram language model.
//
// It shows everything a backend needs and nothing else (docs/custom_backend.md):
//
// - a Cache type holding the per-sequence state. Here that is the token
//   history, preallocated to its capacity, so truncate(n) is one assignment
//   (rollback is a length, never a copy);
// - make_cache(capacity), vocab_size();
// - a const forward(tokens, cache) that appends the tokens and returns one row
//   of logits per appended token, validating everything before touching the
//   cache so a throw leaves it unchanged.
//
// The model itself: counts of every n-gram up to `order` in a training token
// stream, scored with interpolated smoothing
//   p_0(t)         = (c(t) + 1) / (N + V)
//   p_k(t | ctx_k) = (c(ctx_k t) + beta * p_{k-1}(t | ctx_{k-1})) / (c(ctx_k) + beta)
// where ctx_k is the last k tokens. The logits are log p, so the row is a
// proper distribution and speculative *sampling* sees the model's real q / p.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <assistgen/backend.hpp>
#include <assistgen/error.hpp>
#include <assistgen/types.hpp>

namespace ngram {

using assistgen::Token;

/// Per-sequence state of an NgramModel: the tokens fed so far.
class NgramCache {
 public:
  NgramCache() = default;
  explicit NgramCache(std::size_t capacity) : capacity_(capacity) { history_.reserve(capacity); }

  std::size_t size() const { return history_.size(); }
  std::size_t capacity() const { return capacity_; }
  /// Rollback to the first n tokens: O(1) (vector::resize down keeps the buffer).
  void truncate(std::size_t n) {
    if (n > history_.size())
      throw assistgen::InvalidArgument("NgramCache::truncate(" + std::to_string(n) + ") beyond size " +
                                       std::to_string(history_.size()));
    history_.resize(n);
  }
  std::span<const Token> history() const { return history_; }

 private:
  friend class NgramModel;
  std::vector<Token> history_;
  std::size_t capacity_ = 0;
};

/// An n-gram model trained by counting. Immutable after train(); forward is
/// const and only reads the counts, so threads may share one model.
class NgramModel {
 public:
  using Cache = NgramCache;

  /// Counts all n-grams of length 1..order in each sequence (n-grams never
  /// span two sequences). Tokens must lie in [0, vocab).
  static NgramModel train(std::size_t vocab, std::size_t order, const std::vector<std::vector<Token>>& sequences,
                          double beta = 0.5) {
    if (vocab == 0) throw assistgen::InvalidArgument("NgramModel::train: vocab must be positive");
    if (order == 0) throw assistgen::InvalidArgument("NgramModel::train: order must be at least 1");
    if (!(beta > 0.0)) throw assistgen::InvalidArgument("NgramModel::train: beta must be positive");
    NgramModel m;
    m.vocab_ = vocab;
    m.order_ = order;
    m.beta_ = beta;
    m.unigram_.assign(vocab, 0);
    for (const auto& seq : sequences) {
      for (std::size_t i = 0; i < seq.size(); ++i) {
        m.check_token(seq[i], "NgramModel::train");
        ++m.unigram_[static_cast<std::size_t>(seq[i])];
        ++m.total_;
        for (std::size_t k = 1; k < order && k <= i; ++k) {
          Counts& c = m.contexts_[std::vector<Token>(seq.begin() + static_cast<std::ptrdiff_t>(i - k),
                                                     seq.begin() + static_cast<std::ptrdiff_t>(i))];
          ++c.next[seq[i]];
          ++c.total;
        }
      }
    }
    return m;
  }

  std::size_t vocab_size() const { return vocab_; }
  std::size_t order() const { return order_; }
  Cache make_cache(std::size_t capacity) const {
    if (capacity == 0) throw assistgen::InvalidArgument("NgramModel::make_cache: capacity must be at least 1");
    return Cache(capacity);
  }

  /// Appends `tokens` to `cache` and returns their logits [n, vocab].
  /// InvalidArgument for no tokens or an id out of range, CapacityError when
  /// they do not fit; the cache is unchanged then.
  assistgen::Logits forward(std::span<const Token> tokens, Cache& cache) const {
    if (tokens.empty()) throw assistgen::InvalidArgument("NgramModel::forward: no tokens to append");
    for (Token t : tokens) check_token(t, "NgramModel::forward");
    if (tokens.size() > cache.capacity() - cache.size())
      throw assistgen::CapacityError("NgramModel::forward: appending " + std::to_string(tokens.size()) +
                                     " tokens to " + std::to_string(cache.size()) + " exceeds capacity " +
                                     std::to_string(cache.capacity()));
    assistgen::Logits out(tokens.size(), vocab_);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      cache.history_.push_back(tokens[i]);
      score(cache.history_, out.row(i));
    }
    return out;
  }

 private:
  struct Counts {
    std::unordered_map<Token, std::uint32_t> next;
    std::uint64_t total = 0;
  };

  void check_token(Token t, const char* where) const {
    if (t < 0 || static_cast<std::size_t>(t) >= vocab_)
      throw assistgen::InvalidArgument(std::string(where) + ": token id " + std::to_string(t) +
                                       " is outside the vocabulary of " + std::to_string(vocab_));
  }

  // log p(. | the last order-1 tokens of `history`) into `row`.
  void score(const std::vector<Token>& history, std::span<float> row) const {
    std::vector<double> p(vocab_);
    for (std::size_t t = 0; t < vocab_; ++t)
      p[t] = (double(unigram_[t]) + 1.0) / (double(total_) + double(vocab_));
    std::vector<Token> ctx;
    for (std::size_t k = 1; k < order_ && k <= history.size(); ++k) {
      ctx.assign(history.end() - static_cast<std::ptrdiff_t>(k), history.end());
      const auto it = contexts_.find(ctx);
      if (it == contexts_.end()) break;  // a longer context cannot have been seen either
      const Counts& c = it->second;
      const double denom = double(c.total) + beta_;
      for (double& v : p) v *= beta_ / denom;
      for (const auto& [t, n] : c.next) p[static_cast<std::size_t>(t)] += double(n) / denom;
    }
    for (std::size_t t = 0; t < vocab_; ++t) row[t] = static_cast<float>(std::log(p[t]));
  }

  std::size_t vocab_ = 0;
  std::size_t order_ = 1;
  double beta_ = 0.5;
  std::vector<std::uint64_t> unigram_;
  std::uint64_t total_ = 0;
  std::map<std::vector<Token>, Counts> contexts_;  // key: the k context tokens, oldest first
};

// Fails to compile with a message naming the missing member if the model or
// its cache drifts from the contract.
ASSISTGEN_ASSERT_CAUSAL_LM(NgramModel);

}  // namespace ngram

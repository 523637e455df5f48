// A toy backend with tree attention: logits = fn(history), where a tree
// node's history is the cached tokens and its ancestors (the contract of
// backend.hpp's tree requests), and a cache with keep(). It is an independent
// reference for the tree round logic: no kernels, no masks, just the
// history each row is defined to see.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/sampling/rng.hpp"
#include "unit/toy_models.hpp"

namespace toy {

/// A ToyCache with keep(): the kept rows move into place.
struct TreeToyCache : ToyCache {
  TreeToyCache clone() const { return *this; }
  void keep(std::size_t base, std::span<const std::uint32_t> rows) {
    if (base > tokens.size())
      throw assistgen::InvalidArgument("TreeToyCache::keep: base beyond size");
    for (std::size_t j = 0; j < rows.size(); ++j)
      if (rows[j] < base || rows[j] >= tokens.size() || (j > 0 && rows[j] <= rows[j - 1]))
        throw assistgen::InvalidArgument("TreeToyCache::keep: bad row " + std::to_string(rows[j]));
    for (std::size_t j = 0; j < rows.size(); ++j) tokens[base + j] = tokens[rows[j]];
    tokens.resize(base + rows.size());
  }
};

/// logits(row) = fn(the row's history, its own token last), chains and trees.
class TreeFnModel {
 public:
  using Cache = TreeToyCache;
  using Fn = FnModel::Fn;
  static constexpr bool kTreeRequests = true;

  TreeFnModel(std::size_t vocab, Fn fn) : vocab_(vocab), fn_(std::move(fn)) {}

  std::size_t vocab_size() const { return vocab_; }
  Cache make_cache(std::size_t capacity) const {
    Cache c;
    c.cap = capacity;
    return c;
  }
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    Logits out;
    const assistgen::ForwardRequest r{tokens};
    Cache* c = &cache;
    forward(std::span<const assistgen::ForwardRequest>(&r, 1), std::span<Cache* const>(&c, 1), out,
            {});
    return out;
  }
  void forward(std::span<const assistgen::ForwardRequest> requests, std::span<Cache* const> caches,
               Logits& out, const assistgen::LayerPlan& plan) const {
    assistgen::detail::check_requests<Cache>("TreeFnModel", requests, caches);
    if (!plan.runs_all()) throw assistgen::UnsupportedError("TreeFnModel: no layer plans");
    std::size_t rows = 0;
    for (std::size_t r = 0; r < requests.size(); ++r) {
      for (Token t : requests[r].tokens)
        if (t < 0 || static_cast<std::size_t>(t) >= vocab_)
          throw assistgen::InvalidArgument("TreeFnModel: token " + std::to_string(t) +
                                           " out of range");
      if (caches[r]->size() + requests[r].tokens.size() > caches[r]->cap)
        throw assistgen::CapacityError("TreeFnModel: cache full");
      rows += assistgen::output_rows(requests[r]);
    }
    out.resize(rows, vocab_);
    std::size_t row = 0;
    std::vector<Token> h;
    for (std::size_t r = 0; r < requests.size(); ++r) {
      const auto& q = requests[r];
      Cache& c = *caches[r];
      const std::size_t m = q.tokens.size(), first_out = m - assistgen::output_rows(q);
      for (std::size_t i = 0; i < m; ++i) {
        if (i < first_out) continue;
        h.assign(c.tokens.begin(), c.tokens.end());
        std::vector<Token> path;
        if (q.parent.empty()) {
          path.assign(q.tokens.begin(), q.tokens.begin() + static_cast<std::ptrdiff_t>(i + 1));
        } else {
          for (std::int64_t a = static_cast<std::int64_t>(i); a >= 0;
               a = q.parent[static_cast<std::size_t>(a)])
            path.insert(path.begin(), q.tokens[static_cast<std::size_t>(a)]);
        }
        h.insert(h.end(), path.begin(), path.end());
        fn_(h, out.row(row++));
      }
      c.tokens.insert(c.tokens.end(), q.tokens.begin(), q.tokens.end());
      ++calls_;
      fed_ += m;
    }
  }

  std::size_t calls() const { return calls_; }
  std::size_t tokens_fed() const { return fed_; }

 private:
  std::size_t vocab_;
  Fn fn_;
  mutable std::size_t calls_ = 0, fed_ = 0;
};

static_assert(assistgen::AttendsTrees<TreeFnModel> && assistgen::CacheHasKeep<TreeToyCache>);

/// The context a candidate source's calls take, for tests that drive a
/// source directly: `cfg` (which must outlive it), its draft length policy
/// and processor chain, no EOS, a generator seeded with `seed`. `ctx`
/// refers to the members, so the object stays where it was made.
struct SourceContext {
  SourceContext(const assistgen::GenerationConfig& cfg, std::uint64_t seed)
      : length(cfg),
        chain(assistgen::make_processor_chain(cfg)),
        rng(seed),
        ctx{cfg, length, chain, eos, rng} {}
  SourceContext(const SourceContext&) = delete;
  SourceContext& operator=(const SourceContext&) = delete;
  assistgen::DraftLengthPolicy length;
  assistgen::LogitsProcessorChain chain;
  const std::vector<assistgen::Token> eos;
  assistgen::Rng rng;
  assistgen::CandidateContext ctx;
};

/// Logits = table[last token] (vocab x vocab), with tree attention.
inline TreeFnModel tree_table_model(std::size_t vocab, std::vector<float> table) {
  return TreeFnModel(
      vocab, [vocab, table = std::move(table)](std::span<const Token> h, std::span<float> row) {
        const auto* src = table.data() + static_cast<std::size_t>(h.back()) * vocab;
        std::copy(src, src + vocab, row.begin());
      });
}

}  // namespace toy

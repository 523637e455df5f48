// Tree-shaped drafts from a draft model (EAGLE-2's dynamic draft tree, Li et
// al. 2024; or a static shape): instead of one chain of K tokens, a tree of
// up to GenerationConfig::tree_nodes candidates that the target verifies in
// one pass (tree_acceptance.hpp), accepting the longest path it agrees with.
// A CandidateSource (candidate_source.hpp) whose proposal carries a parent
// array, tree_parent(); detail::AssistedSequence then verifies it as a tree
// (AssistedDecoder, TreeDecoder, BatchEngine).
//
// How the tree grows (depth limit D = num_assistant_tokens, clipped to the
// tokens left):
//   level 1: the draft's row after the sequence S gives the root's children;
//   level d + 1: the expanded nodes of level d (dynamic: the tree_width of
//     them with the highest cumulative draft probability, the product of the
//     processed draft probabilities along the path; static: all of them) get
//     their most likely children (dynamic: tree_width each; static:
//     tree_shape[d]). The draft computes the rows of all expanded nodes of a
//     level in ONE forward call. A draft that continues cached trees
//     (backend.hpp: ContinuesTrees, the CPU backend) keeps every fed node in
//     its cache after S, so each level's call is a tree request of that
//     level's expanded nodes alone, their parents in the cache. Another
//     draft's level call re-feeds the expanded ancestors of the frontier
//     (at most tree_width x depth rows) except the path they all share,
//     which stays in the cache from one level to the next.
//   the tree verified: the tree_nodes nodes with the highest cumulative
//     probability (ancestors rank before descendants), breadth first and
//     most likely sibling first. A dynamic tree stops growing once no
//     expanded node can reach that cut.
// Greedy decoding: a node's children are the draft's most likely tokens
// (deterministic candidates: one-hot q for tree_acceptance.hpp).
// Sampling (do_sample): a node's children are drawn from the processed
// draft distribution q WITHOUT replacement (child j from q with children
// 1..j-1 removed, renormalized: q_row() of that node), which the recursive
// rejection sampling of tree_acceptance.hpp takes as each child's proposal,
// so the target's law is kept exactly and siblings never repeat. Exactness
// also needs the set of children a node keeps not to depend on their
// values, so in sampling mode nothing is cut after drawing: tree_nodes
// bounds the tree as it grows, the frontier's nodes (best cumulative
// probability first) each getting their children up to the room left (the
// last may get fewer), and every drawn child is verified. A count decided
// before a node's children are drawn keeps their laws; which nodes are
// expanded may depend on their own tokens, which only decides whether a
// subtree exists below them.
// Nodes holding an EOS token are not expanded. The schedule options
// (heuristic K, confidence) do not apply to trees: D stays num_assistant_tokens.
//
// Cache protocol: before propose() the draft cache holds a prefix of S; the
// first call feeds the rest (a chain), the level calls append tree nodes
// after S (kept across levels, or cut back to S and the shared path), and
// the cache is cut back to |S| at the end of the proposal, so between rounds
// it holds at most S.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/detail/log_sum_exp.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/sampling/logits_processor.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// The tree options of a GenerationConfig, checked: InvalidArgument naming
/// the option when tree_width is 0, a tree_shape entry is 0, or the static
/// shape has more than 4096 nodes.
inline void check_tree_options(const GenerationConfig& cfg) {
  if (cfg.tree_width == 0)
    throw InvalidArgument(
        "GenerationConfig: tree_width must be at least 1 (children per expanded node)");
  std::size_t level = 1, total = 0;
  for (std::size_t d = 0; d < cfg.tree_shape.size(); ++d) {
    if (cfg.tree_shape[d] == 0)
      throw InvalidArgument("GenerationConfig: tree_shape[" + std::to_string(d) +
                            "] is 0 (every level needs at least one child per node)");
    level *= cfg.tree_shape[d];
    total += level;
    if (level > 4096 || total > 4096)
      throw InvalidArgument("GenerationConfig: tree_shape makes more than 4096 nodes");
  }
}

/// Whether `cfg` asks for tree drafts (tree_nodes or tree_shape set).
inline bool uses_tree(const GenerationConfig& cfg) {
  return cfg.tree_nodes > 0 || !cfg.tree_shape.empty();
}

/// Proposes a tree of candidates with a draft model (see the file comment).
/// Holds the draft's cache; `vocab` is the target's vocabulary size (draft
/// logits beyond it are ignored; a draft with fewer rows is accepted as in
/// DraftModelCandidates).
template <CausalLM Draft>
class DraftTreeCandidates {
 public:
  using Cache = typename Draft::Cache;  ///< the draft model's KV cache type

  /// Keeps a reference to `model` (it must outlive this object). Throws
  /// InvalidArgument for bad tree options, CompatibilityError as
  /// DraftModelCandidates does for a draft vocabulary that is too small.
  DraftTreeCandidates(const Draft& model, std::size_t vocab, const GenerationConfig& cfg,
                      std::span<const Token> never_generated = {})
      : model_(&model),
        vocab_(vocab),
        rows_(std::min<std::size_t>(model.vocab_size(), vocab)),
        nodes_(cfg.tree_nodes),
        width_(cfg.tree_width),
        shape_(cfg.tree_shape),
        continues_(continues_trees(model)) {
    check_tree_options(cfg);
    detail::check_draft_vocab(static_cast<std::size_t>(model.vocab_size()), vocab, never_generated);
    if (nodes_ == 0 && shape_.empty())
      throw InvalidArgument(
          "DraftTreeCandidates: GenerationConfig::tree_nodes is 0 and tree_shape is empty");
  }

  // ---- CandidateSource

  /// A generation starts: the cache cut to its first `keep` positions (made
  /// for `capacity` positions, the target's, when too small).
  void start(std::size_t capacity, std::size_t keep, CandidateContext&) {
    capacity_ = capacity;
    // Slack for the expanded nodes a level call appends after S.
    detail::reuse_or_make_cache(*model_, cache_, capacity + kSlack, keep);
    calls_ = 0;
    seconds_ = 0.0;
  }
  /// The depth limit: num_assistant_tokens (the static shape's depth when
  /// that is smaller).
  std::size_t limit(const CandidateContext& ctx) const {
    const std::size_t k = ctx.config.num_assistant_tokens;
    return shape_.empty() ? k : std::min(k, shape_.size());
  }
  /// Grows the tree after work[0..n) to at most `depth` levels and appends
  /// its nodes to `work` (breadth first); tree_parent() gives their parents.
  /// Returns the node count. The tree never needs more target cache slots
  /// than the capacity start() was given.
  std::size_t propose(std::vector<Token>& work, std::size_t n, std::size_t depth,
                      CandidateContext& ctx) {
    work.resize(n);
    parent_.clear();
    cand_.clear();
    sample_ = ctx.config.do_sample;
    drawn_q_.clear();
    // The target's cache holds n - 1 positions and takes 1 + nodes more.
    const std::size_t max_nodes =
        std::min(shape_.empty() || nodes_ != 0 ? nodes_ : std::numeric_limits<std::size_t>::max(),
                 capacity_ > n ? capacity_ - n : 0);
    if (depth == 0 || max_nodes == 0) return 0;
    Cache& c = *cache_;
    if (c.size() >= n) c.truncate(n - 1);
    run_draft(std::span<const Token>(work).subspan(c.size()), {}, 1);  // the root's row
    kept_.clear();
    cached_parent_.clear();
    tree_slot_.clear();
    expand_row(0, -1, 0.0, work, n, ctx, max_nodes);
    for (std::size_t d = 1; d < depth; ++d) {
      // The nodes of level d to expand, best first.
      frontier_.clear();
      for (std::size_t i = 0; i < cand_.size(); ++i)
        if (cand_[i].depth == d && !is_eos(cand_[i].token, ctx))
          frontier_.push_back(static_cast<std::uint32_t>(i));
      std::stable_sort(frontier_.begin(), frontier_.end(), [&](std::uint32_t a, std::uint32_t b) {
        return cand_[a].score > cand_[b].score;
      });
      if (shape_.empty() && frontier_.size() > width_) frontier_.resize(width_);
      if (sample_) {
        // Expand the best nodes while there is room (see the file comment).
        const std::size_t want = shape_.empty() ? width_ : shape_[d];
        const std::size_t room = max_nodes - std::min(max_nodes, cand_.size());
        if (frontier_.size() > (room + want - 1) / want) frontier_.resize((room + want - 1) / want);
      } else if (shape_.empty()) {
        // A child scores below its parent: a node below the max_nodes-th
        // best score so far cannot bring a descendant into the tree.
        if (cand_.size() >= max_nodes) {
          scores_.clear();
          for (const auto& x : cand_) scores_.push_back(x.score);
          std::nth_element(scores_.begin(),
                           scores_.begin() + static_cast<std::ptrdiff_t>(max_nodes - 1),
                           scores_.end(), std::greater<>());
          const double cut = scores_[max_nodes - 1];
          while (!frontier_.empty() && !(cand_[frontier_.back()].score > cut)) frontier_.pop_back();
        }
      }
      if (frontier_.empty()) break;
      if (!(continues_ ? feed_continued(n) : feed_refed(n))) break;  // the draft's cache is full
      const std::size_t fcount = frontier_.size();  // expand_row appends to cand_, not frontier_
      for (std::size_t r = 0; r < fcount; ++r) {
        const std::uint32_t f = frontier_[r];
        // Sampling: children up to the room left, never cut afterwards.
        const std::size_t most =
            sample_ ? max_nodes - std::min(max_nodes, cand_.size()) : max_nodes;
        expand_row(r, static_cast<std::int32_t>(f), cand_[f].score, work, n, ctx, most);
      }
    }
    if (c.size() > n) c.truncate(n);
    select(work, n, max_nodes);
    return parent_.size();
  }
  /// The distribution node i of the last proposal was drawn from (sampling:
  /// q with its earlier siblings removed, renormalized), or empty: greedy
  /// candidates are deterministic (one-hot q).
  std::span<const float> q_row(std::size_t i) const {
    if (q_of_.empty()) return {};
    return {drawn_q_.data() + std::size_t{q_of_[i]} * vocab_, vocab_};
  }
  /// The parents of the last proposal's nodes (-1: the sequence's last token).
  std::span<const std::int32_t> tree_parent() const { return parent_; }
  /// The proposal is dropped: the cache keeps at most `n` positions.
  void discard(std::size_t n) { rollback(n); }
  /// The target accepted a path: the cache keeps at most S (the next round
  /// feeds the accepted path with the first call).
  void learn(std::size_t n, std::size_t, CandidateContext&) { rollback(n); }
  /// Generation stopped: the cache keeps at most `n` positions.
  void cut(std::size_t n) { rollback(n); }
  /// Draft calls and seconds of this generation into `stats`.
  void finish(GenerationStats& stats) const {
    stats.draft_calls = calls_;
    stats.draft_seconds = seconds_;
  }
  /// The draft's cache for round observers (null before start()).
  const Cache* draft_cache() const { return cache_ ? &*cache_ : nullptr; }
  /// The target's limits lowered by the draft's (as DraftModelCandidates).
  PositionLimits limits(PositionLimits target) const {
    return detail::combined_limits(target, position_limits(*model_));
  }
  /// The draft model (not owned).
  const Draft& model() const { return *model_; }

 private:
  struct Cand {
    Token token;
    std::int32_t parent;  // index into cand_, -1: the root
    std::size_t depth;    // 1 for the root's children
    double score;         // log of the cumulative draft probability
  };

  static bool is_eos(Token t, const CandidateContext& ctx) {
    return std::find(ctx.eos.begin(), ctx.eos.end(), t) != ctx.eos.end();
  }

  void rollback(std::size_t n) {
    if (cache_ && cache_->size() > n) cache_->truncate(n);
  }

  // One draft call; with `tree_base`, a tree continuing the cached nodes of
  // cached_parent_.
  void run_draft(std::span<const Token> tokens, std::span<const std::int32_t> parent,
                 std::size_t outputs, std::size_t tree_base = kNoTreeBase) {
    const auto t0 = std::chrono::steady_clock::now();
    const ForwardRequest request{tokens, parent, outputs, tree_base,
                                 tree_base == kNoTreeBase
                                     ? std::span<const std::int32_t>{}
                                     : std::span<const std::int32_t>(cached_parent_)};
    Cache* const caches[1] = {&*cache_};
    forward_batch(*model_, std::span<const ForwardRequest>(&request, 1),
                  std::span<Cache* const>(caches), logits_);
    if (logits_.rows() != outputs || logits_.cols() < rows_)
      throw Error("draft tree forward returned logits of shape [" + std::to_string(logits_.rows()) +
                  ", " + std::to_string(logits_.cols()) + "] for " + std::to_string(outputs) +
                  " rows");
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
  }

  // The draft call of one level: the rows of frontier_, in order, into
  // logits_ (S has n tokens). false: the draft's cache has no room.
  // A draft that continues cached trees: the cache holds every node fed so
  // far after S, the frontier's parents among them, so the call feeds the
  // frontier alone.
  bool feed_continued(std::size_t n) {
    if (n + cached_parent_.size() + frontier_.size() > cache_->capacity()) return false;
    tree_slot_.resize(cand_.size(), -1);
    feed_tokens_.clear();
    feed_parent_.clear();
    // A node's parent as a cached slot (-1: S's last token).
    auto parent_slot = [&](std::uint32_t f) {
      const std::int32_t p = cand_[f].parent;
      return p < 0 ? -1 : tree_slot_[static_cast<std::size_t>(p)];
    };
    for (const std::uint32_t f : frontier_) {
      const std::int32_t slot = parent_slot(f);
      feed_tokens_.push_back(cand_[f].token);
      feed_parent_.push_back(slot < 0 ? -1 : -2 - slot);
    }
    run_draft(feed_tokens_, feed_parent_, frontier_.size(), n);
    for (const std::uint32_t f : frontier_) {
      cached_parent_.push_back(parent_slot(f));
      tree_slot_[f] = static_cast<std::int32_t>(cached_parent_.size() - 1);
    }
    return true;
  }
  // Another draft: the ancestors every frontier node shares (the path from
  // the root to their lowest common ancestor) stay in the cache from one
  // level to the next; the call cuts the cache back to the part of that path
  // it already holds and feeds the rest of the path as a chain, then the
  // other expanded ancestors of the frontier, then the frontier.
  bool feed_refed(std::size_t n) {
    common_.clear();
    for (std::int64_t a = cand_[frontier_[0]].parent; a >= 0;
         a = cand_[static_cast<std::size_t>(a)].parent)
      common_.push_back(static_cast<std::uint32_t>(a));
    std::reverse(common_.begin(), common_.end());
    for (std::size_t r = 1; r < frontier_.size(); ++r) {
      // Walk up from the depth common_ reaches (common_[i] has depth i +
      // 1); the paths agree above the highest place they differ.
      std::size_t len = common_.size();
      std::int64_t a = cand_[frontier_[r]].parent;
      while (a >= 0 && cand_[static_cast<std::size_t>(a)].depth > len)
        a = cand_[static_cast<std::size_t>(a)].parent;
      for (std::size_t i = common_.size(); i-- > 0; a = cand_[static_cast<std::size_t>(a)].parent)
        if (static_cast<std::int64_t>(common_[i]) != a) len = i;
      common_.resize(len);
    }
    std::size_t kept = 0;
    while (kept < kept_.size() && kept < common_.size() && kept_[kept] == common_[kept]) ++kept;
    std::fill(mark_.begin(), mark_.end(), 0);
    mark_.resize(cand_.size(), 0);
    for (const std::uint32_t f : frontier_)
      for (std::int64_t a = cand_[f].parent; a >= 0; a = cand_[static_cast<std::size_t>(a)].parent)
        mark_[static_cast<std::size_t>(a)] = 1;
    for (const std::uint32_t a : common_) mark_[a] = 0;
    feed_.assign(common_.begin() + static_cast<std::ptrdiff_t>(kept), common_.end());
    for (std::size_t i = 0; i < cand_.size(); ++i)
      if (mark_[i]) feed_.push_back(static_cast<std::uint32_t>(i));
    feed_.insert(feed_.end(), frontier_.begin(), frontier_.end());
    if (n + kept + feed_.size() > cache_->capacity()) return false;
    // Request slots; a parent in the cache is the last cached position
    // (the path's last kept node, or S's last token): -1.
    slot_.assign(cand_.size(), -1);
    feed_tokens_.clear();
    feed_parent_.clear();
    for (std::size_t j = 0; j < feed_.size(); ++j) {
      const Cand& x = cand_[feed_[j]];
      slot_[feed_[j]] = static_cast<std::int32_t>(j);
      feed_tokens_.push_back(x.token);
      feed_parent_.push_back(x.parent < 0 ? -1 : slot_[static_cast<std::size_t>(x.parent)]);
    }
    cache_->truncate(n + kept);
    run_draft(feed_tokens_, feed_parent_, frontier_.size());
    kept_.assign(common_.begin(), common_.end());  // in the cache after S, in order
    return true;
  }

  // The children of `parent` (a cand_ index, -1: the root) from the draft's
  // logits row r, processed with the path's history: the most likely tokens
  // (greedy) or draws without replacement (sampling), at most `most`, with
  // their cumulative log probabilities.
  void expand_row(std::size_t r, std::int32_t parent, double score, const std::vector<Token>& work,
                  std::size_t n, CandidateContext& ctx, std::size_t most) {
    const std::size_t depth = parent < 0 ? 0 : cand_[static_cast<std::size_t>(parent)].depth;
    const std::size_t want = std::min(most, shape_.empty() ? width_ : shape_[depth]);
    std::span<float> row = logits_.row(r).first(rows_);
    if (rows_ < vocab_) {
      padded_.assign(vocab_, -std::numeric_limits<float>::infinity());
      std::copy(row.begin(), row.end(), padded_.begin());
      row = padded_;
    }
    history_.assign(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(n));
    path_.clear();
    for (std::int64_t a = parent; a >= 0; a = cand_[static_cast<std::size_t>(a)].parent)
      path_.push_back(cand_[static_cast<std::size_t>(a)].token);
    history_.insert(history_.end(), path_.rbegin(), path_.rend());
    ctx.chain.apply(row, std::span<const Token>(history_));
    const float mx = row_max(row);
    if (!std::isfinite(mx)) return;  // every token masked
    if (sample_) return draw_children(row, parent, depth, score, want, ctx.rng);
    // log softmax of the processed row.
    const double log_z = detail::log_sum_exp(row, mx);
    // The k most likely, best first, ties to the lower id (argmax's rule),
    // in one pass: a token enters the list only above its last entry (NaN
    // never does). With the row's maximum from eight running maxima, this
    // took a proposal's own work (outside the draft's forward calls) from
    // 141 to 77 us for N=8 W=2 D=5 on the README pair, where a partial sort
    // of the row's ids and a scalar maximum did it before.
    const std::size_t k = std::min(want, row.size());
    order_.clear();
    for (std::size_t i = 0; i < row.size(); ++i) {
      const float x = row[i];
      if (x != x || (order_.size() == k && !(x > row[order_.back()]))) continue;
      std::size_t at = order_.size();
      while (at > 0 && x > row[order_[at - 1]]) --at;
      if (order_.size() < k) order_.push_back(0);
      for (std::size_t j = order_.size() - 1; j > at; --j) order_[j] = order_[j - 1];
      order_[at] = static_cast<std::uint32_t>(i);
    }
    for (const std::uint32_t t : order_) {
      const float x = row[t];
      if (x == -std::numeric_limits<float>::infinity()) break;  // probability 0
      cand_.push_back({static_cast<Token>(t), parent, depth + 1, score + double(x) - log_z});
    }
  }

  // The largest value of `row`, NaN ignored (-infinity if there is none):
  // eight running maxima, which the compiler keeps in one vector register.
  static float row_max(std::span<const float> row) {
    constexpr std::size_t kLanes = 8;
    float lane[kLanes];
    std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + kLanes <= row.size(); i += kLanes)
      for (std::size_t l = 0; l < kLanes; ++l) lane[l] = std::max(lane[l], row[i + l]);
    float mx = -std::numeric_limits<float>::infinity();
    for (; i < row.size(); ++i) mx = std::max(mx, row[i]);
    for (const float v : lane) mx = std::max(mx, v);
    return mx;
  }

  // Sampling: `want` children of `parent` drawn without replacement from q =
  // softmax(row) (row not all masked); child j's distribution (q without the
  // earlier children, renormalized) goes to drawn_q_ as candidate
  // cand_.size()'s row.
  void draw_children(std::span<const float> row, std::int32_t parent, std::size_t depth,
                     double score, std::size_t want, Rng& rng) {
    q0_.resize(row.size());
    softmax(row, q0_);
    left_.assign(q0_.begin(), q0_.end());
    for (std::size_t j = 0; j < want; ++j) {
      double total = 0.0;
      for (const float w : left_) total += w;
      if (!(total > 0.0)) break;  // q's support is used up
      const Token t = sample_categorical(std::span<const float>(left_), rng);
      const std::size_t at = drawn_q_.size();
      drawn_q_.resize(at + vocab_);
      for (std::size_t v = 0; v < vocab_; ++v)
        drawn_q_[at + v] = static_cast<float>(double(left_[v]) / total);
      const auto ti = static_cast<std::size_t>(t);
      cand_.push_back({t, parent, depth + 1, score + std::log(double(q0_[ti]))});
      left_[ti] = 0.0f;
    }
  }

  // The verified tree: the max_nodes best candidates (score, then depth,
  // then creation order: a parent always ranks before its children),
  // breadth first, best sibling first.
  // Sampling: every candidate (the expansion kept them within max_nodes),
  // breadth first, siblings in the order they were drawn, with their q rows.
  void select(std::vector<Token>& work, std::size_t n, std::size_t max_nodes) {
    rank_.resize(cand_.size());
    std::iota(rank_.begin(), rank_.end(), 0u);
    if (!sample_) {
      auto better = [&](std::uint32_t a, std::uint32_t b) {
        if (cand_[a].score != cand_[b].score) return cand_[a].score > cand_[b].score;
        if (cand_[a].depth != cand_[b].depth) return cand_[a].depth < cand_[b].depth;
        return a < b;
      };
      std::sort(rank_.begin(), rank_.end(), better);
      if (rank_.size() > max_nodes) rank_.resize(max_nodes);
    }
    std::stable_sort(rank_.begin(), rank_.end(), [&](std::uint32_t a, std::uint32_t b) {
      return cand_[a].depth < cand_[b].depth;
    });
    if (sample_)
      q_of_.assign(rank_.begin(), rank_.end());
    else
      q_of_.clear();
    slot_.assign(cand_.size(), -1);
    for (std::size_t j = 0; j < rank_.size(); ++j) {
      const Cand& x = cand_[rank_[j]];
      slot_[rank_[j]] = static_cast<std::int32_t>(j);
      work.push_back(x.token);
      parent_.push_back(x.parent < 0 ? -1 : slot_[static_cast<std::size_t>(x.parent)]);
    }
    (void)n;
  }

  static constexpr std::size_t kSlack = 128;

  const Draft* model_;
  std::size_t vocab_;
  std::size_t rows_;
  std::size_t nodes_, width_;
  std::vector<std::size_t> shape_;
  bool continues_;  // the draft continues cached trees: each level call feeds its frontier only
  std::size_t capacity_ = 0;
  std::optional<Cache> cache_;
  Logits logits_;
  std::vector<Cand> cand_;
  std::vector<std::int32_t> parent_;
  // Scratch reused every round.
  std::vector<std::uint32_t> frontier_, feed_, order_, rank_;
  // The frontier's shared ancestors (root side first), and the ones the
  // draft's cache holds after S.
  std::vector<std::uint32_t> common_, kept_;
  // A continued tree: the parents of the nodes cached after S (relative
  // slots, -1: S's last token), and each candidate's slot (-1: not fed).
  std::vector<std::int32_t> cached_parent_, tree_slot_;
  std::vector<std::uint8_t> mark_;
  std::vector<std::int32_t> slot_, feed_parent_;
  std::vector<Token> feed_tokens_, history_, path_;
  std::vector<float> padded_;
  std::vector<double> scores_;
  bool sample_ = false;  // this proposal's children are drawn (do_sample)
  // Sampling: the draft's q at the node being expanded and what is left of
  // it; each candidate's distribution (cand_ order); each verified node's
  // candidate (q_row).
  std::vector<float> q0_, left_, drawn_q_;
  std::vector<std::uint32_t> q_of_;
  std::size_t calls_ = 0;
  double seconds_ = 0.0;
};

}  // namespace assistgen

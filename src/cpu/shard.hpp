// Private to the CPU backend: a cpu::Transformer's share of a tensor-parallel
// group (tensor_parallel.hpp; docs/distributed.md). Every matmul is split by
// its output columns (column-parallel): a rank keeps whole rows of W, so each
// of its outputs is the full-length dot product of one rank's kernel, whose
// result for a column never depends on which other columns share the call
// (kernels.hpp, kernels_q4.hpp). The pieces are then gathered (copied, never
// summed), so every rank holds the bits one rank computes:
//   qkv     the rank's query heads and the key/value heads they read;
//   o       a share of the hidden columns, from the gathered attention rows;
//   mlp_in  a share of the intermediate columns (gate and up alike);
//   mlp_out a share of the hidden columns, from the gathered activations;
//   lm_head a share of the vocabulary, gathered into the full logits.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "assistgen/io/quantized.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/tensor_parallel.hpp"

namespace assistgen::cpu::detail {

/// What a gather reassembles: the columns of one kind, per rank.
enum class ShardPart { q, hidden, inter, vocab };

class Shard {
 public:
  /// This rank's share of `cfg` in `group` (size() > 1). Throws ConfigError
  /// when the model cannot be split that many ways (fewer query heads than
  /// ranks).
  Shard(const ModelConfig& cfg, std::shared_ptr<RankGroup> group);

  std::size_t rank() const { return rank_; }
  std::size_t ranks() const { return ranks_; }
  RankGroup& group() const { return *group_; }
  Share q_heads() const { return q_heads_; }
  Share kv_heads() const { return kv_heads_; }
  Share hidden() const { return share(ShardPart::hidden, rank_); }
  Share inter() const { return share(ShardPart::inter, rank_); }
  Share vocab() const { return share(ShardPart::vocab, rank_); }

  /// Rows of the fused QKV weight ([q_dim + 2 kv_dim, hidden]) this rank keeps.
  std::vector<Share> qkv_rows() const;
  /// Rows of the MLP-in weight: the intermediate share of gate (and up).
  std::vector<Share> mlp_in_rows() const;

  /// `local` ([rows, this rank's columns of `part`], row-major) from every
  /// rank into `full` ([rows, all columns], row-major). Collective.
  void gather(const float* local, std::size_t rows, ShardPart part, float* full) const;

  /// Throws ConfigError naming the first rank whose `fingerprint` differs
  /// from rank 0's (ranks that loaded another model or dtype). Collective.
  void check_same(std::uint64_t fingerprint, const std::string& what) const;

 private:
  Share share(ShardPart part, std::size_t r) const;
  std::shared_ptr<RankGroup> group_;
  std::size_t rank_ = 0, ranks_ = 1;
  std::size_t nq_ = 0, group_size_ = 1, hd_ = 0, hidden_ = 0, inter_ = 0, vocab_ = 0;
  bool gated_ = false;
  Share q_heads_, kv_heads_;
};

/// The rows of each kind of weight a rank keeps while loading (all rows,
/// as empty lists, without a shard).
struct RowShares {
  explicit RowShares(const std::optional<Shard>& shard) {
    if (!shard) return;
    qkv = shard->qkv_rows();
    mlp_in = shard->mlp_in_rows();
    hidden = {shard->hidden()};
    vocab = {shard->vocab()};
  }
  std::vector<Share> qkv, mlp_in, hidden, vocab;
};

/// Keeps the rows `keep` (in order) of a [rows, cols] row-major matrix
/// (cols 1: a vector); empty `keep` keeps everything, and an empty `m` (no
/// bias) stays empty.
void keep_rows(std::vector<float>& m, std::size_t cols, std::span<const Share> keep);
/// The same for group-quantized weights (codes, scales and mins of the rows).
void keep_rows(io::GroupQuantized& g, std::span<const Share> keep);
/// The number of rows `keep` selects.
std::size_t kept_rows(std::span<const Share> keep);

}  // namespace assistgen::cpu::detail

// A cpu::Transformer's share of a tensor-parallel group (shard.hpp).
#include "shard.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "assistgen/error.hpp"

namespace assistgen::cpu::detail {

Shard::Shard(const ModelConfig& cfg, std::shared_ptr<RankGroup> group)
    : group_(std::move(group)),
      rank_(group_->rank()),
      ranks_(group_->size()),
      nq_(cfg.num_attention_heads),
      group_size_(cfg.num_attention_heads / cfg.num_key_value_heads),
      hd_(cfg.head_dim),
      hidden_(cfg.hidden_size),
      inter_(cfg.intermediate_size),
      vocab_(cfg.vocab_size),
      gated_(cfg.gated_mlp) {
  if (ranks_ > nq_)
    throw ConfigError("tensor parallel: " + std::to_string(ranks_) + " ranks but the model has " +
                      std::to_string(nq_) +
                      " attention heads (num_attention_heads); a rank needs at least one "
                      "(run with at most " +
                      std::to_string(nq_) + " ranks)");
  if (rank_ >= ranks_)
    throw InvalidArgument("tensor parallel: rank " + std::to_string(rank_) + " of a group of " +
                          std::to_string(ranks_));
  q_heads_ = share_of(nq_, rank_, ranks_);
  // The key/value heads its query heads read: whole GQA groups, shared with
  // a neighbour when a group straddles two ranks (each computes it, the same bits).
  kv_heads_ = {q_heads_.begin / group_size_, (q_heads_.end - 1) / group_size_ + 1};
}

Share Shard::share(ShardPart part, std::size_t r) const {
  switch (part) {
    case ShardPart::q: {
      const Share h = share_of(nq_, r, ranks_);
      return {h.begin * hd_, h.end * hd_};
    }
    case ShardPart::hidden:
      return share_of(hidden_, r, ranks_);
    case ShardPart::inter:
      return share_of(inter_, r, ranks_);
    case ShardPart::vocab:
      return share_of(vocab_, r, ranks_);
  }
  return {};
}

std::vector<Share> Shard::qkv_rows() const {
  const std::size_t q_dim = nq_ * hd_, kv_dim = nq_ / group_size_ * hd_;
  return {{q_heads_.begin * hd_, q_heads_.end * hd_},
          {q_dim + kv_heads_.begin * hd_, q_dim + kv_heads_.end * hd_},
          {q_dim + kv_dim + kv_heads_.begin * hd_, q_dim + kv_dim + kv_heads_.end * hd_}};
}

std::vector<Share> Shard::mlp_in_rows() const {
  const Share i = inter();
  if (!gated_) return {i};
  return {i, {inter_ + i.begin, inter_ + i.end}};
}

void Shard::gather(const float* local, std::size_t rows, ShardPart part, float* full) const {
  // Per rank: its block of rows x columns, contiguous; one rank's columns of
  // a row are contiguous in `full` too, so a single row gathers in place.
  thread_local std::vector<std::size_t> counts;
  thread_local std::vector<float> blocks;
  counts.resize(ranks_);
  std::size_t total = 0;
  for (std::size_t r = 0; r < ranks_; ++r) {
    counts[r] = rows * share(part, r).size() * sizeof(float);
    total += share(part, r).size();
  }
  if (rows == 1) {
    group_->all_gather(local, counts, full);
    return;
  }
  if (blocks.size() < rows * total) blocks.resize(rows * total);
  group_->all_gather(local, counts, blocks.data());
  const float* b = blocks.data();
  for (std::size_t r = 0; r < ranks_; ++r) {
    const Share s = share(part, r);
    for (std::size_t i = 0; i < rows; ++i, b += s.size())
      std::copy_n(b, s.size(), full + i * total + s.begin);
  }
}

void Shard::check_same(std::uint64_t fingerprint, const std::string& what) const {
  std::vector<std::uint64_t> all(ranks_);
  const std::vector<std::size_t> counts(ranks_, sizeof fingerprint);
  group_->all_gather(&fingerprint, counts, all.data());
  for (std::size_t r = 1; r < ranks_; ++r)
    if (all[r] != all[0])
      throw ConfigError("tensor parallel: rank " + std::to_string(r) +
                        " loaded another model than rank 0 (" + what +
                        " differ): every rank must load the same model with the same options");
}

std::size_t kept_rows(std::span<const Share> keep) {
  std::size_t n = 0;
  for (const Share& s : keep) n += s.size();
  return n;
}

void keep_rows(std::vector<float>& m, std::size_t cols, std::span<const Share> keep) {
  if (keep.empty() || m.empty()) return;  // everything, or an absent bias
  std::vector<float> out;
  out.reserve(kept_rows(keep) * cols);
  for (const Share& s : keep)
    out.insert(out.end(), m.begin() + static_cast<std::ptrdiff_t>(s.begin * cols),
               m.begin() + static_cast<std::ptrdiff_t>(s.end * cols));
  m.swap(out);
}

void keep_rows(io::GroupQuantized& g, std::span<const Share> keep) {
  if (keep.empty()) return;
  std::vector<std::size_t> rows;
  rows.reserve(kept_rows(keep));
  for (const Share& s : keep)
    for (std::size_t r = s.begin; r < s.end; ++r) rows.push_back(r);
  g = g.take_rows(rows);
}

}  // namespace assistgen::cpu::detail

// cpu::Transformer: the decoder forward pass (loading is in transformer.cpp) on the CPU for every family of
// the architecture registry (architecture.hpp).
//
// Per layer: norm -> fused QKV matmul -> RoPE (rope families) -> write K/V at
// their positions in the preallocated cache -> causal (optionally
// sliding-window) GQA attention over the cache, read in place -> O matmul ->
// residual -> norm -> MLP-in matmul (gate and up fused) -> activation (gated
// or plain) -> MLP-out matmul -> residual. What differs between families is
// data in ModelConfig (norm kind, positions, gating, activation, window) and
// the tensor names of the registry's CheckpointLayout; the loop below
// branches on that data in a few named places only. All activations live in
// the sequence's cache scratch, so a const model serves many sequences at once.
//
// Batch invariance: every value of a row is computed by the same operations
// in the same order whatever the number of rows in the call: matmuls by the
// kernels of kernels.hpp; norms, attention scores and softmax sums by the
// fixed-order reductions there (never by Eigen's, whose vectorized order
// depends on pointer alignment); exp/tanh by the scalar libm functions.
// Threads split columns or (row, head) tasks, never a reduction.
//
// Sliding window (Mistral, Qwen2 with use_sliding_window): the cache keeps
// every position and attention reads only keys j with i - j < window (HF's
// sliding_window_overlay: kv_idx > q_idx - sliding_window). Nothing wraps, so
// truncate() stays a length change and a rolled-back cache is exactly a fresh
// one; the cost is memory for the full length rather than the window.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "assistgen/error.hpp"
#include "assistgen/detail/token_checks.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "prefill_onednn.hpp"
#include "transformer_impl.hpp"

namespace assistgen::cpu {

namespace {

// Where a stacked row of a call comes from and what it attends to.
struct RowInfo {
  std::uint32_t request = 0;   // index into the call's requests
  std::size_t slot = 0;        // the cache slot its K/V are written to
  std::size_t pos = 0;         // its position (RoPE, learned positions, window)
  std::size_t prefix_end = 0;  // sees cache slots [0, prefix_end) (window permitting) ...
  std::size_t anc_begin = 0, anc_end = 0;  // ... then ancestors[anc_begin, anc_end) (trees)
};

// Queries of one attention task at most: 16 queries' scores of a block of
// keys or values while it is in L1.
constexpr std::size_t kTaskQueries = 16;

// Heads [h0, h1) (local query heads of KV head g) of rows [r0, r1) (of one
// request): queries over the same cache rows, for detail::attend_many().
struct AttentionTask {
  std::uint32_t r0, r1, h0, h1, g;
};

// Per-thread activations and bookkeeping of a forward call (the gemma.cpp
// split of activations from the KV cache): grown to the largest call this
// thread has made, never shrunk, so a steady decode loop allocates nothing.
struct Workspace {
  std::vector<float> scratch;
  std::vector<std::uint8_t> quant;  // int8-quantized activations of a matmul input
  std::vector<float> quant_scale;
  std::vector<RowInfo> rows;
  std::vector<std::uint32_t> ancestors;  // tree rows' visible ancestor slots, ascending
  std::vector<std::size_t> depth;        // tree depth per row of the current request
  std::vector<std::size_t> cached_depth;  // ... and per cached node of a continued tree
  std::vector<std::size_t> outputs;      // stacked rows that produce logits
  std::vector<float> mine;               // tensor parallel: this rank's columns before a gather
  std::vector<AttentionTask> attention;  // the call's attention tasks
};

Workspace& workspace() {
  thread_local Workspace w;
  return w;
}

// The caches of one call held with exclusive_use() for its duration; up to
// kInline without allocating.
class Holds {
 public:
  explicit Holds(std::size_t n) {
    if (n > kInline) extra_ = std::make_unique<std::optional<ExclusiveUseFlag::Hold>[]>(n - kInline);
  }
  void hold(std::size_t i, KvStorage& kv) {
    auto& slot = i < kInline ? inline_[i] : extra_[i - kInline];
    slot.emplace(kv.in_use_flag(), "cpu::Transformer::forward");
  }

 private:
  static constexpr std::size_t kInline = 8;
  std::optional<ExclusiveUseFlag::Hold> inline_[kInline];
  std::unique_ptr<std::optional<ExclusiveUseFlag::Hold>[]> extra_;
};

}  // namespace

void Transformer::Impl::forward(std::span<const ForwardRequest> requests,
                                std::span<TransformerCache* const> caches, Logits& out,
                                const LayerPlan& plan, const ForwardStage& stage) const {
  constexpr const char* kWho = "cpu::Transformer::forward";
  assistgen::detail::check_requests<TransformerCache>(kWho, requests, caches);
  if (requests.empty()) throw InvalidArgument(std::string(kWho) + ": no requests");
  const std::size_t n_layers = layers.size();
  if (plan.early_exit > n_layers)
    throw InvalidArgument(std::string(kWho) + ": LayerPlan::early_exit " + std::to_string(plan.early_exit) +
                          " is more than the model's " + std::to_string(n_layers) + " layers");
  for (const std::uint32_t l : plan.skip)
    if (l >= n_layers)
      throw InvalidArgument(std::string(kWho) + ": LayerPlan::skip names layer " + std::to_string(l) +
                            " of a model with " + std::to_string(n_layers) + " layers");
  const bool learned_positions = cfg.positions == PositionKind::learned;
  std::size_t n = 0;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const std::span<const Token> tokens = requests[r].tokens;
    assistgen::detail::check_token_ids(tokens, cfg.vocab_size,
                            requests.size() > 1 ? std::optional<std::size_t>(r) : std::nullopt);
    const KvStorage& kv = caches[r]->kv();
    if (kv.layers() != cfg.num_hidden_layers || kv.kv_heads() != kv_heads.size() ||
        kv.head_dim() != cfg.head_dim)
      throw InvalidArgument(std::string(kWho) + ": cache was made by a model of another shape");
    n += tokens.size();
  }
  // Held for the whole call: a second thread using one of these caches
  // meanwhile is rejected instead of corrupting it (exclusive_use.hpp).
  Holds holds(requests.size());
  for (std::size_t r = 0; r < requests.size(); ++r) holds.hold(r, caches[r]->kv());

  // Rows, positions and what each row attends to.
  Workspace& ws = workspace();
  ws.rows.resize(n);
  ws.ancestors.clear();
  ws.outputs.clear();
  std::size_t max_capacity = 0, max_keys = 0;
  {
    std::size_t row = 0;
    for (std::size_t r = 0; r < requests.size(); ++r) {
      const ForwardRequest& q = requests[r];
      KvStorage& kv = caches[r]->kv();
      const std::size_t m = q.tokens.size();
      const std::size_t base = stage.resume_slot ? *stage.resume_slot : kv.size();
      if (!stage.resume_slot) kv.check_append(m);
      max_capacity = std::max(max_capacity, kv.capacity());
      const bool tree = !q.parent.empty();
      // A continued tree (backend.hpp: tree_base): the rows see the sequence
      // [0, tree_base) and their ancestors, cached ones included.
      const std::size_t seq = q.continues_tree() ? q.tree_base : base;
      if (tree) ws.depth.resize(m);
      std::size_t deepest = m == 0 ? 0 : m - 1;
      if (tree) {
        if (q.continues_tree()) {
          ws.cached_depth.resize(q.cached_parent.size());
          for (std::size_t j = 0; j < q.cached_parent.size(); ++j)
            ws.cached_depth[j] =
                q.cached_parent[j] < 0
                    ? 0
                    : ws.cached_depth[static_cast<std::size_t>(q.cached_parent[j])] + 1;
        }
        deepest = 0;
        for (std::size_t i = 0; i < m; ++i) {
          const std::int32_t p = q.parent[i];
          ws.depth[i] = p == -1  ? 0
                        : p >= 0 ? ws.depth[static_cast<std::size_t>(p)] + 1
                                 : ws.cached_depth[static_cast<std::size_t>(-2 - p)] + 1;
          deepest = std::max(deepest, ws.depth[i]);
        }
      }
      if (learned_positions && seq + deepest + 1 > cfg.max_position_embeddings)
        throw CapacityError(std::string(kWho) + ": " + cfg.architecture +
                            " has learned positions 0.." +
                            std::to_string(cfg.max_position_embeddings - 1) +
                            " (n_positions / max_position_embeddings = " +
                            std::to_string(cfg.max_position_embeddings) + "); appending " +
                            std::to_string(m) + " tokens after " + std::to_string(base) +
                            " would need position " + std::to_string(seq + deepest));
      const std::size_t first_out = m - output_rows(q);
      for (std::size_t i = 0; i < m; ++i, ++row) {
        RowInfo& ri = ws.rows[row];
        ri.request = static_cast<std::uint32_t>(r);
        ri.slot = base + i;
        if (!tree) {
          ri.pos = base + i;
          ri.prefix_end = base + i + 1;
          ri.anc_begin = ri.anc_end = 0;
        } else {
          ri.pos = seq + ws.depth[i];
          ri.prefix_end = seq;
          // Ancestors (itself included), collected leaf-first, then reversed
          // into ascending slots (= ascending depth): the request's, then
          // from a parent -2 - j on, the cached tree's.
          ri.anc_begin = ws.ancestors.size();
          std::int64_t a = static_cast<std::int64_t>(i);
          for (; a >= 0; a = q.parent[static_cast<std::size_t>(a)])
            ws.ancestors.push_back(static_cast<std::uint32_t>(base + static_cast<std::size_t>(a)));
          for (a = -2 - a; a >= 0; a = q.cached_parent[static_cast<std::size_t>(a)])
            ws.ancestors.push_back(static_cast<std::uint32_t>(seq + static_cast<std::size_t>(a)));
          ri.anc_end = ws.ancestors.size();
          std::reverse(ws.ancestors.begin() + static_cast<std::ptrdiff_t>(ri.anc_begin), ws.ancestors.end());
        }
        max_keys = std::max(max_keys, ri.pos + 1);
        if (i >= first_out) ws.outputs.push_back(row);
      }
    }
  }

  const int threads = max_threads();
  const std::size_t H = cfg.hidden_size, I = cfg.intermediate_size, hd = cfg.head_dim;
  const std::size_t nq = cfg.num_attention_heads, nkv = cfg.num_key_value_heads;
  const std::size_t group = nq / nkv, half = hd / 2;
  // Tensor parallel (shard.hpp): this rank's heads and columns; the whole
  // model on one rank. Rows of qkv, att_mine and act_mine hold local columns.
  const std::size_t lnq = q_heads.size(), lnkv = kv_heads.size(), lq = local_q_dim,
                    lkv = local_kv_dim;
  const std::size_t lI = local_inter, l_mlp_in = local_mlp_in_dim;
  const std::size_t qkv_w = lq + 2 * lkv;
  const std::size_t n_out = ws.outputs.size();

  // Attention tasks: per request and KV head, its query heads over the
  // request's rows, at most kTaskQueries queries a task.
  ws.attention.clear();
  std::size_t task_queries = 1;
  for (std::size_t r0 = 0; r0 < n;) {
    std::size_t r1 = r0 + 1;
    while (r1 < n && ws.rows[r1].request == ws.rows[r0].request) ++r1;
    for (std::size_t g = 0; g < lnkv; ++g) {
      const std::size_t first_q = (kv_heads.begin + g) * group;  // of the model's heads
      const std::size_t h0 = std::max(first_q, q_heads.begin) - q_heads.begin;
      const std::size_t h1 = std::min(first_q + group, q_heads.begin + lnq) - q_heads.begin;
      if (h0 >= h1) continue;
      const std::size_t heads = std::min(h1 - h0, kTaskQueries);
      const std::size_t rows = std::max<std::size_t>(1, kTaskQueries / (h1 - h0));
      task_queries = std::max(task_queries, heads * std::min(rows, r1 - r0));
      for (std::size_t a = r0; a < r1; a += rows)
        for (std::size_t h = h0; h < h1; h += heads)
          ws.attention.push_back(
              {static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(std::min(r1, a + rows)),
               static_cast<std::uint32_t>(h), static_cast<std::uint32_t>(std::min(h1, h + heads)),
               static_cast<std::uint32_t>(g)});
    }
    r0 = r1;
  }

  // Carve the scratch buffer. Scores are sized by the largest cache's
  // capacity, not the current length, so decoding does not regrow it token
  // by token.
  const std::size_t sz_x = n * H, sz_xn = n * H, sz_qkv = n * qkv_w, sz_att = n * q_dim,
                    sz_mlp = n * l_mlp_in, sz_act = n * I, sz_rope = n * hd,
                    sz_scores = static_cast<std::size_t>(threads) * task_queries *
                                std::max(max_capacity, max_keys),
                    sz_head = n_out * H;
  auto& s = ws.scratch;
  const std::size_t need = sz_x + sz_xn + sz_qkv + sz_att + sz_mlp + sz_act + sz_rope + sz_scores + sz_head;
  if (s.size() < need) s.resize(need);
  float* x = s.data();
  float* xn = x + sz_x;
  float* qkv = xn + sz_xn;
  float* att = qkv + sz_qkv;
  float* mlp = att + sz_att;
  float* act = mlp + sz_mlp;
  float* rope_cs = act + sz_act;  // per token: cos[half], sin[half]
  float* scores = rope_cs + sz_rope;
  float* head_in = scores + sz_scores;  // the final-norm rows that produce logits
  const std::size_t score_stride = std::max(max_capacity, max_keys);
  detail::LinearScratch lsc{ws.quant, ws.quant_scale};
  // A prompt prefill (one chain request of all layers that wants no logits,
  // as the decoders feed a prompt's tokens before the last) of at least
  // onednn_rows rows runs its matmuls on oneDNN (prefill_onednn.hpp). Only
  // such calls do, so every call that yields logits, and every decoder's
  // prefill of the same prompt, keeps one path and its bits.
  const PrefillPath path = prefill_path();
  const bool prefill_call = requests.size() == 1 && requests[0].parent.empty() && n_out == 0 &&
                            plan.early_exit == 0 && plan.skip.empty() && stage.begin_layer == 0 &&
                            stage.hidden_in.empty() && !stage.resume_slot && !stage.hidden_out;
  const bool onednn = prefill_call && path != PrefillPath::kernels &&
                      (path == PrefillPath::onednn
                           ? detail::onednn_handles(lm_head)
                           : onednn_rows > 0 && n >= onednn_rows);
  auto matmul = [&](const PackedLinear& p, const float* in, std::size_t rows, float* y) {
    if (onednn && detail::onednn_handles(p))
      detail::onednn_linear(p, in, rows, y, lsc, threads);
    else
      detail::linear(p, in, rows, y, lsc, threads);
  };
  // Tensor parallel: this rank's columns go to ws.mine, then every rank's
  // are gathered into y; on one rank straight into y.
  if (shard) {
    const std::size_t need =
        std::max(n * std::max({lq, lI, shard->hidden().size()}), n_out * shard->vocab().size());
    if (ws.mine.size() < need) ws.mine.resize(need);
  }
  float* att_mine = shard ? ws.mine.data() : att;
  float* act_mine = shard ? ws.mine.data() : act;
  auto matmul_cols = [&](const PackedLinear& p, const float* in, std::size_t rows, float* y,
                         detail::ShardPart part) {
    if (!shard) return matmul(p, in, rows, y);
    matmul(p, in, rows, ws.mine.data());
    shard->gather(ws.mine.data(), rows, part, y);
  };

  {
    std::size_t row = 0;
    for (const ForwardRequest& q : requests)
      for (std::size_t i = 0; i < q.tokens.size(); ++i, ++row) {
        const std::size_t pos = ws.rows[row].pos;
        const float* e = embed.data() + static_cast<std::size_t>(q.tokens[i]) * H;
        float* xi = x + row * H;
        if (!stage.hidden_in.empty()) {  // the residual stream of an earlier stage
          std::copy_n(stage.hidden_in.data() + row * H, H, xi);
          if (!learned_positions) rope_cos_sin(inv_freq, pos, rope_cs + row * hd, rope_cs + row * hd + half);
        } else if (learned_positions) {
          const float* pe = pos_embed.data() + pos * H;
          for (std::size_t j = 0; j < H; ++j) xi[j] = e[j] + pe[j];
        } else {
          std::copy_n(e, H, xi);
          rope_cos_sin(inv_freq, pos, rope_cs + row * hd, rope_cs + row * hd + half);
        }
      }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (std::size_t l = stage.begin_layer; l < n_layers; ++l) {
    if (!plan.runs(l)) continue;
    const Layer& L = layers[l];
    norm(x, L.attn_norm, xn, n);
    matmul(L.qkv, xn, n, qkv);
    for (std::size_t i = 0; i < n; ++i) {
      const RowInfo& ri = ws.rows[i];
      KvStorage& kv = caches[ri.request]->kv();
      float* row = qkv + i * qkv_w;
      const float* c = rope_cs + i * hd;
      if (!learned_positions)
        for (std::size_t h = 0; h < lnq; ++h) rope(row + h * hd, c, c + half);
      for (std::size_t h = 0; h < lnkv; ++h) {
        float* k = row + lq + h * hd;
        if (!learned_positions) rope(k, c, c + half);
        std::copy_n(k, hd, kv.key(l, h, ri.slot));
        std::copy_n(row + lq + lkv + h * hd, hd, kv.value(l, h, ri.slot));
      }
    }
    // Row i (position p) sees the cached slots [first, prefix_end) and, in a
    // tree, its ancestors: all of them, or those within the window
    // (p - position < window). The tasks split over the threads (one chunk
    // of consecutive tasks each, with its own score rows) when the work pays
    // for a parallel region: from 2^14 query-key-dimension products
    // (measured on the README's pair, one decode row: the target's step at
    // 300 cached tokens 3.06-3.24 -> 2.73-2.99 ms, the draft's 0.36-0.40 ->
    // 0.31-0.34 ms, against a threshold of 2^18).
    const std::size_t window = cfg.window_of_layer(l);
    const std::size_t att_work = n * lnq * max_keys * hd;
    const int att_threads = att_work >= (std::size_t{1} << 14) || detail::split_forced() ? threads : 1;
    const std::size_t tasks = ws.attention.size();
    const auto chunks = std::min(static_cast<std::size_t>(att_threads), tasks);
    detail::parallel_for(att_threads, chunks, [&](std::size_t c) {
      float* sc = scores + c * task_queries * score_stride;
      detail::AttendQuery qs[kTaskQueries];
      for (std::size_t t = tasks * c / chunks; t < tasks * (c + 1) / chunks; ++t) {
        const AttentionTask& task = ws.attention[t];
        const KvStorage& kv = caches[ws.rows[task.r0].request]->kv();
        std::size_t m = 0;
        for (std::size_t i = task.r0; i < task.r1; ++i) {
          const RowInfo& ri = ws.rows[i];
          const std::size_t p = ri.pos;
          const std::size_t first = (window != 0 && p + 1 > window) ? p + 1 - window : 0;
          const std::size_t count = ri.prefix_end > first ? ri.prefix_end - first : 0;
          std::span<const std::uint32_t> anc(ws.ancestors.data() + ri.anc_begin,
                                             ri.anc_end - ri.anc_begin);
          // The k-th ancestor (ascending) sits at position prefix_end + k and
          // the row itself at p = prefix_end + anc.size() - 1: within the
          // window are those with k >= anc.size() - window.
          if (window != 0 && anc.size() > window) anc = anc.subspan(anc.size() - window);
          for (std::size_t h = task.h0; h < task.h1; ++h, ++m)
            qs[m] = {.q = qkv + i * qkv_w + h * hd,
                     .first = first,
                     .count = count,
                     .extra = anc,
                     .scores = sc + m * score_stride,
                     .out = att_mine + i * lq + h * hd};
        }
        detail::attend_many(std::span<const detail::AttendQuery>(qs, m), kv.key(l, task.g, 0),
                            kv.value(l, task.g, 0), hd, scale);
      }
    });
    if (shard) shard->gather(att_mine, n, detail::ShardPart::q, att);
    matmul_cols(L.o, att, n, xn, detail::ShardPart::hidden);
    for (std::size_t i = 0; i < n * H; ++i) x[i] += xn[i];

    norm(x, L.mlp_norm, xn, n);
    matmul(L.mlp_in, xn, n, mlp);
    // The activation, elementwise: split over the threads by blocks of rows
    // and columns once there are enough of them to pay for it.
    const std::size_t act_blocks = n * lI >= (std::size_t{1} << 14) || detail::split_forced()
                                       ? 4 * static_cast<std::size_t>(threads)
                                       : 1;
    detail::parallel_for(threads, act_blocks, [&](std::size_t b) {
      const std::size_t e0 = n * lI * b / act_blocks, e1 = n * lI * (b + 1) / act_blocks;
      for (std::size_t e = e0; e < e1;) {
        const std::size_t i = e / lI, j0 = e % lI, j1 = std::min(lI, j0 + (e1 - e));
        float* a = act_mine + i * lI;
        const float* first = mlp + i * l_mlp_in;
        if (cfg.activation == Activation::silu) {  // silu(gate) (* up)
          detail::silu(first + j0, cfg.gated_mlp ? first + lI + j0 : nullptr, j1 - j0, a + j0);
        } else if (cfg.gated_mlp) {  // gelu(gate) * up
          const float* up = first + lI;
          for (std::size_t j = j0; j < j1; ++j) a[j] = gelu(first[j]) * up[j];
        } else {
          for (std::size_t j = j0; j < j1; ++j) a[j] = gelu(first[j]);
        }
        e += j1 - j0;
      }
    });
    if (shard) shard->gather(act_mine, n, detail::ShardPart::inter, act);
    matmul_cols(L.mlp_out, act, n, xn, detail::ShardPart::hidden);
    for (std::size_t i = 0; i < n * H; ++i) x[i] += xn[i];
  }
  // Final norm and LM head for the output rows only (a prefill computes one
  // LM-head row, not one per token).
  for (std::size_t o = 0; o < n_out; ++o) std::copy_n(x + ws.outputs[o] * H, H, xn + o * H);
  norm(xn, final_norm, head_in, n_out);
  out.resize(n_out, cfg.vocab_size);
  if (n_out > 0) matmul_cols(lm_head, head_in, n_out, out.data(), detail::ShardPart::vocab);
  // Weights are finite (checked at load), but activations can still
  // overflow; non-finite logits are an error here, naming the model and the
  // position, before the caches take the new rows (they are left unchanged).
  const float* lg = out.data();
  for (std::size_t e = 0; e < n_out * cfg.vocab_size; ++e) {
    if (!std::isfinite(lg[e])) {
      const RowInfo& ri = ws.rows[ws.outputs[e / cfg.vocab_size]];
      throw FormatError("cpu::Transformer '" + name + "': the logits at position " + std::to_string(ri.pos) +
                        (requests.size() > 1 ? " of request " + std::to_string(ri.request) : std::string()) +
                        " are not finite (token id " + std::to_string(e % cfg.vocab_size) + " is " +
                        (std::isnan(lg[e]) ? "NaN" : "infinite") + "): the weights overflow float arithmetic");
    }
  }
  if (stage.hidden_out) stage.hidden_out->insert(stage.hidden_out->end(), x, x + n * H);
  if (!stage.resume_slot)
    for (std::size_t r = 0; r < requests.size(); ++r) caches[r]->kv().commit(requests[r].tokens.size());
}

Logits Transformer::forward(std::span<const Token> tokens, Cache& cache) const {
  Logits out;
  forward(tokens, cache, out);
  return out;
}

void Transformer::forward(std::span<const Token> tokens, Cache& cache, Logits& out) const {
  const ForwardRequest request{tokens};
  Cache* const cache_ptr = &cache;
  if (tokens.empty()) throw InvalidArgument("cpu::Transformer::forward: no tokens to append");
  impl_->forward({&request, 1}, {&cache_ptr, 1}, out, {});
}

void Transformer::forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches,
                          Logits& out, const LayerPlan& plan) const {
  impl_->forward(requests, caches, out, plan);
}

}  // namespace assistgen::cpu

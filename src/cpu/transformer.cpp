// cpu::Transformer: the decoder forward pass on the CPU for every family of
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
#include "assistgen/cpu/transformer.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <string>

#include "assistgen/architecture.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/gguf.hpp"
#include "assistgen/io/safetensors.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace assistgen::cpu {

using detail::PackedLinear;
using detail::WeightType;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

/// A norm's parameters; `bias` is empty for RMSNorm.
struct NormWeights {
  std::vector<float> weight, bias;
};

struct Layer {
  NormWeights attn_norm, mlp_norm;
  PackedLinear qkv;      // [q_dim + 2 kv_dim, hidden]
  PackedLinear o;        // [hidden, q_dim]
  PackedLinear mlp_in;   // gated: [2 * intermediate, hidden] (gate rows, then up); else
                         // [intermediate, hidden]
  PackedLinear mlp_out;  // [hidden, intermediate]
};

std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// `count` values of about N(0, sd): the sum of four 16-bit uniforms of one
// hash of (stream, index), centred and scaled to unit variance. Counter-based,
// so the values do not depend on the thread count; cheap enough to make a
// TinyLlama-sized model in seconds.
std::vector<float> random_normal(std::size_t count, float sd, std::uint64_t stream) {
  std::vector<float> v(count);
  const float scale = sd * std::sqrt(3.0f) / 65536.0f;
  const std::uint64_t key = splitmix(stream);
  const auto n = static_cast<std::ptrdiff_t>(count);
#pragma omp parallel for schedule(static) if (count > (1u << 16))
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const std::uint64_t h = splitmix(key ^ static_cast<std::uint64_t>(i) * 0xd1b54a32d192ed03ull);
    const auto s =
        static_cast<float>((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48));
    v[static_cast<std::size_t>(i)] = (s - 2.0f * 65535.0f) * scale;
  }
  return v;
}

WeightType weight_type(DType t) {
  switch (t) {
    case DType::f32:
      return WeightType::f32;
    case DType::bf16:
      return WeightType::bf16;
    case DType::i8:
      return WeightType::i8;
    default:
      throw UnsupportedError("cpu::Transformer: LoadOptions::dtype '" + std::string(dtype_name(t)) +
                             "' is not a compute dtype (f32, bf16, i8)");
  }
}

}  // namespace

struct Transformer::Impl {
  std::string name;  // the checkpoint directory, for messages
  ModelConfig cfg;
  LoadOptions opts;
  std::size_t q_dim = 0, kv_dim = 0, mlp_in_dim = 0;
  std::vector<float> embed;      // [vocab, hidden]
  std::vector<float> pos_embed;  // [max_position_embeddings, hidden]; learned positions only
  std::vector<Layer> layers;
  NormWeights final_norm;
  PackedLinear lm_head;  // [vocab, hidden]; packed from embed when tied
  std::vector<double> inv_freq;

  void init_dims() {
    q_dim = cfg.num_attention_heads * cfg.head_dim;
    kv_dim = cfg.num_key_value_heads * cfg.head_dim;
    mlp_in_dim = (cfg.gated_mlp ? 2 : 1) * cfg.intermediate_size;
    if (cfg.positions == PositionKind::rope) inv_freq = rope_inverse_frequencies(cfg);
  }

  static std::size_t norm_bytes(const NormWeights& w) {
    return (w.weight.size() + w.bias.size()) * sizeof(float);
  }

  std::size_t weight_bytes() const {
    std::size_t n = (embed.size() + pos_embed.size()) * sizeof(float) + norm_bytes(final_norm) +
                    lm_head.bytes();
    for (const auto& l : layers)
      n += norm_bytes(l.attn_norm) + norm_bytes(l.mlp_norm) + l.qkv.bytes() + l.o.bytes() +
           l.mlp_in.bytes() + l.mlp_out.bytes();
    return n;
  }

  std::size_t bytes_per_token() const {
    std::size_t n = (pos_embed.empty() ? 1 : 2) * cfg.hidden_size * sizeof(float) +
                    norm_bytes(final_norm) + lm_head.bytes();
    for (const auto& l : layers)
      n += norm_bytes(l.attn_norm) + norm_bytes(l.mlp_norm) + l.qkv.bytes() + l.o.bytes() +
           l.mlp_in.bytes() + l.mlp_out.bytes();
    return n;
  }

  DType dtype = DType::f32;  // opts.dtype, or what the checkpoint suggested

  void check_supported() {
    dtype = opts.dtype.value_or(DType::f32);
    weight_type(dtype);    // throws for a dtype the kernels do not compute in
    architecture_of(cfg);  // throws for an unregistered architecture
  }

  PackedLinear pack(const float* w, std::size_t n, std::size_t k, const float* bias) const {
    return detail::pack_linear(weight_type(dtype), w, n, k, bias);
  }

  void norm(const float* x, const NormWeights& nw, float* y, std::size_t rows) const {
    const std::size_t h = cfg.hidden_size;
    const auto eps = static_cast<float>(cfg.norm_eps);
    const float* w = nw.weight.data();
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x + r * h;
      float* yr = y + r * h;
      if (cfg.norm == NormKind::rms_norm) {
        const float ms = detail::sum_squares(xr, h) / static_cast<float>(h);
        const float inv = 1.0f / std::sqrt(ms + eps);
        for (std::size_t i = 0; i < h; ++i) yr[i] = (xr[i] * inv) * w[i];
      } else {  // LayerNorm: biased variance, as torch.nn.LayerNorm
        const float mean = detail::sum(xr, h) / static_cast<float>(h);
        for (std::size_t i = 0; i < h; ++i) yr[i] = xr[i] - mean;
        const float var = detail::sum_squares(yr, h) / static_cast<float>(h);
        const float inv = 1.0f / std::sqrt(var + eps);
        const float* b = nw.bias.data();
        for (std::size_t i = 0; i < h; ++i) yr[i] = (yr[i] * inv) * w[i] + b[i];
      }
    }
  }

  // Rotates one head vector in place (HF rotate_half: pairs (i, i + d/2)).
  void rope(float* v, const float* cos_t, const float* sin_t) const {
    const std::size_t half = cfg.head_dim / 2;
    for (std::size_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos_t[i] - b * sin_t[i];
      v[i + half] = b * cos_t[i] + a * sin_t[i];
    }
  }

  // act(x), for the configured activation; scalar libm calls, so the value
  // of an element never depends on its neighbours or its address.
  float activate(float x) const {
    if (cfg.activation == Activation::silu) return x / (1.0f + std::exp(-x));
    // gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(kC * (x + 0.044715f * (x * x * x))));
  }

  int max_threads() const { return opts.threads > 0 ? opts.threads : omp_get_max_threads(); }

  void forward(std::span<const Token> tokens, TransformerCache& cache, Logits& out) const;
};

void Transformer::Impl::forward(std::span<const Token> tokens, TransformerCache& cache,
                                Logits& out) const {
  const std::size_t n = tokens.size();
  if (n == 0) throw InvalidArgument("cpu::Transformer::forward: no tokens to append");
  for (std::size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || static_cast<std::size_t>(tokens[i]) >= cfg.vocab_size)
      throw InvalidArgument("token id " + std::to_string(tokens[i]) + " at position " +
                            std::to_string(i) + " is out of range for vocabulary size " +
                            std::to_string(cfg.vocab_size));
  KvStorage& kv = cache.kv();
  if (kv.layers() != cfg.num_hidden_layers || kv.kv_heads() != cfg.num_key_value_heads ||
      kv.head_dim() != cfg.head_dim)
    throw InvalidArgument("cpu::Transformer::forward: cache was made by a model of another shape");
  // Held for the whole call: a second thread using this cache meanwhile is
  // rejected instead of corrupting it (kv_cache.hpp).
  const auto hold = kv.exclusive_use("cpu::Transformer::forward");
  kv.check_append(n);
  const std::size_t pos0 = kv.size();
  const std::size_t total = pos0 + n;
  const bool learned_positions = cfg.positions == PositionKind::learned;
  if (learned_positions && total > cfg.max_position_embeddings)
    throw CapacityError(
        "cpu::Transformer::forward: " + cfg.architecture + " has learned positions 0.." +
        std::to_string(cfg.max_position_embeddings - 1) +
        " (n_positions / max_position_embeddings = " + std::to_string(cfg.max_position_embeddings) +
        "); appending " + std::to_string(n) + " tokens after " + std::to_string(pos0) +
        " would need position " + std::to_string(total - 1));

  const int threads = max_threads();
  const std::size_t H = cfg.hidden_size, I = cfg.intermediate_size, hd = cfg.head_dim;
  const std::size_t nq = cfg.num_attention_heads, nkv = cfg.num_key_value_heads;
  const std::size_t group = nq / nkv, half = hd / 2;
  const std::size_t qkv_w = q_dim + 2 * kv_dim;

  // Carve the scratch buffer. Scores are sized by the cache's capacity, not
  // the current length, so decoding does not regrow it token by token.
  const std::size_t sz_x = n * H, sz_xn = n * H, sz_qkv = n * qkv_w, sz_att = n * q_dim,
                    sz_mlp = n * mlp_in_dim, sz_act = n * I, sz_rope = n * hd,
                    sz_scores = static_cast<std::size_t>(threads) * kv.capacity();
  auto& s = cache.scratch_;
  const std::size_t need = sz_x + sz_xn + sz_qkv + sz_att + sz_mlp + sz_act + sz_rope + sz_scores;
  if (s.size() < need) s.resize(need);
  float* x = s.data();
  float* xn = x + sz_x;
  float* qkv = xn + sz_xn;
  float* att = qkv + sz_qkv;
  float* mlp = att + sz_att;
  float* act = mlp + sz_mlp;
  float* rope_cs = act + sz_act;  // per token: cos[half], sin[half]
  float* scores = rope_cs + sz_rope;
  detail::LinearScratch lsc{cache.quant_, cache.quant_scale_};
  auto matmul = [&](const PackedLinear& p, const float* in, float* y) {
    detail::linear(p, in, n, y, lsc, threads);
  };

  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t pos = pos0 + i;
    const float* e = embed.data() + static_cast<std::size_t>(tokens[i]) * H;
    float* xi = x + i * H;
    if (learned_positions) {
      const float* pe = pos_embed.data() + pos * H;
      for (std::size_t j = 0; j < H; ++j) xi[j] = e[j] + pe[j];
    } else {
      std::copy_n(e, H, xi);
      for (std::size_t j = 0; j < half; ++j) {
        const double a = static_cast<double>(pos) * inv_freq[j];
        rope_cs[i * hd + j] = static_cast<float>(std::cos(a));
        rope_cs[i * hd + half + j] = static_cast<float>(std::sin(a));
      }
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (std::size_t l = 0; l < layers.size(); ++l) {
    const Layer& L = layers[l];
    norm(x, L.attn_norm, xn, n);
    matmul(L.qkv, xn, qkv);
    for (std::size_t i = 0; i < n; ++i) {
      float* row = qkv + i * qkv_w;
      const float* c = rope_cs + i * hd;
      if (!learned_positions)
        for (std::size_t h = 0; h < nq; ++h) rope(row + h * hd, c, c + half);
      for (std::size_t h = 0; h < nkv; ++h) {
        float* k = row + q_dim + h * hd;
        if (!learned_positions) rope(k, c, c + half);
        std::copy_n(k, hd, kv.key(l, h, pos0 + i));
        std::copy_n(row + q_dim + kv_dim + h * hd, hd, kv.value(l, h, pos0 + i));
      }
    }
    // Token i (position p = pos0 + i) sees positions [first, p]: all of them,
    // or the last `window` (p - j < window). One task per (token, head);
    // threads only when the work pays for a parallel region.
    const std::size_t window = cfg.window_of_layer(l);
    const std::size_t tasks = n * nq;
    const std::size_t att_work = n * nq * total * hd;
    const int att_threads = att_work >= (std::size_t{1} << 18) || detail::split_forced() ? threads : 1;
    // One chunk of consecutive tasks per thread, each with its own scores row.
    const auto chunks = static_cast<std::size_t>(att_threads);
    detail::parallel_for(att_threads, chunks, [&](std::size_t c) {
      float* sc = scores + c * kv.capacity();
      for (std::size_t t = tasks * c / chunks; t < tasks * (c + 1) / chunks; ++t) {
        const std::size_t i = t / nq, h = t % nq;
        const std::size_t g = h / group, p = pos0 + i;
        const std::size_t first = (window != 0 && p + 1 > window) ? p + 1 - window : 0;
        const std::size_t len = p + 1 - first;
        detail::attend(qkv + i * qkv_w + h * hd, kv.key(l, g, first), kv.value(l, g, first), len,
                       hd, scale, sc, att + i * q_dim + h * hd);
      }
    });
    matmul(L.o, att, xn);
    for (std::size_t i = 0; i < n * H; ++i) x[i] += xn[i];

    norm(x, L.mlp_norm, xn, n);
    matmul(L.mlp_in, xn, mlp);
    // The activation, elementwise: split over the threads by blocks of rows
    // and columns once there are enough of them to pay for it.
    const std::size_t act_blocks =
        n * I >= (std::size_t{1} << 14) || detail::split_forced() ? 4 * static_cast<std::size_t>(threads) : 1;
    detail::parallel_for(threads, act_blocks, [&](std::size_t b) {
      const std::size_t e0 = n * I * b / act_blocks, e1 = n * I * (b + 1) / act_blocks;
      for (std::size_t e = e0; e < e1;) {
        const std::size_t i = e / I, j0 = e % I, j1 = std::min(I, j0 + (e1 - e));
        float* a = act + i * I;
        const float* first = mlp + i * mlp_in_dim;
        if (cfg.gated_mlp) {  // act(gate) * up
          const float* up = first + I;
          for (std::size_t j = j0; j < j1; ++j) a[j] = activate(first[j]) * up[j];
        } else {
          for (std::size_t j = j0; j < j1; ++j) a[j] = activate(first[j]);
        }
        e += j1 - j0;
      }
    });
    matmul(L.mlp_out, act, xn);
    for (std::size_t i = 0; i < n * H; ++i) x[i] += xn[i];
  }
  norm(x, final_norm, xn, n);
  out.resize(n, cfg.vocab_size);
  matmul(lm_head, xn, out.data());
  // Weights are finite (checked at load), but activations can still
  // overflow; non-finite logits are an error here, naming the model and the
  // position, before the cache takes the new rows (it is left unchanged).
  const float* lg = out.data();
  for (std::size_t e = 0; e < n * cfg.vocab_size; ++e) {
    if (!std::isfinite(lg[e]))
      throw FormatError("cpu::Transformer '" + name + "': the logits at position " +
                        std::to_string(pos0 + e / cfg.vocab_size) + " are not finite (token id " +
                        std::to_string(e % cfg.vocab_size) + " is " +
                        (std::isnan(lg[e]) ? "NaN" : "infinite") +
                        "): the weights overflow float arithmetic");
  }
  kv.commit(n);
}

// ---------------------------------------------------------------------------
// Loading

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads the parts of `src` as one [rows, cols] row-major matrix (cols == 0:
// a vector of `rows`), transposing parts stored [in, out]. Each part's shape
// is checked against the config; `used` collects the names read.
// Every part's shape is checked before anything is allocated, so a config
// that claims a huge vocabulary or hidden size over a tiny file is a
// FormatError, never a huge reservation; values must be finite
// (TensorView::to_finite_float).
std::vector<float> read(const io::Checkpoint& ck, const WeightSource& src, std::size_t cols,
                        std::vector<std::string>& used) {
  for (const TensorPart& part : src.parts) {
    const io::TensorView& t = ck.tensor(part.name);
    const auto r = static_cast<std::int64_t>(part.rows), c = static_cast<std::int64_t>(cols);
    std::vector<std::int64_t> want = cols == 0        ? std::vector<std::int64_t>{r}
                                     : src.transposed ? std::vector<std::int64_t>{c, r}
                                                      : std::vector<std::int64_t>{r, c};
    if (t.shape != want)
      throw FormatError(ck.dir().string() + ": tensor '" + part.name + "' has shape " +
                        shape_str(t.shape) + " but the config implies " + shape_str(want) +
                        (src.transposed && cols != 0 ? " (Conv1D: [in, out])" : ""));
  }
  std::vector<float> out;
  out.reserve(src.rows() * std::max<std::size_t>(cols, 1));
  for (const TensorPart& part : src.parts) {
    const io::TensorView& t = ck.tensor(part.name);
    const auto r = static_cast<std::int64_t>(part.rows), c = static_cast<std::int64_t>(cols);
    std::vector<float> v = t.to_finite_float();
    if (src.transposed && cols != 0) {
      Eigen::Map<const RowMatrix> stored(v.data(), c, r);
      std::vector<float> tr(v.size());
      Eigen::Map<RowMatrix>(tr.data(), r, c) = stored.transpose();
      v.swap(tr);
    }
    out.insert(out.end(), v.begin(), v.end());
    used.push_back(part.name);
  }
  return out;
}

}  // namespace

Transformer::Transformer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Transformer::Transformer(Transformer&&) noexcept = default;
Transformer& Transformer::operator=(Transformer&&) noexcept = default;
Transformer::~Transformer() = default;

Transformer Transformer::load(const std::filesystem::path& dir, const LoadOptions& options) {
  if (io::is_gguf_path(dir)) {  // a GGUF file: config and weights from it (io/gguf.hpp)
    const io::GgufModel m = io::load_gguf_model(dir);
    return from_checkpoint(m.config, m.weights, options);
  }
  const ModelConfig cfg = ModelConfig::load(dir / "config.json");
  const io::Checkpoint ck(dir);
  return from_checkpoint(cfg, ck, options);
}

Transformer Transformer::from_checkpoint(const ModelConfig& config, const io::Checkpoint& ck,
                                         const LoadOptions& options) {
  config.validate((ck.dir() / "config.json").string());
  auto impl = std::make_unique<Impl>();
  impl->name = ck.dir().string();
  impl->cfg = config;
  impl->opts = options;
  impl->check_supported();
  impl->init_dims();
  const auto& c = impl->cfg;
  const CheckpointLayout layout =
      architecture_of(c).layout(c, [&ck](const std::string& name) { return ck.contains(name); });
  if (layout.layers.size() != c.num_hidden_layers)
    throw ConfigError(c.architecture + ": the registry's layout names " +
                      std::to_string(layout.layers.size()) + " layers, the config " +
                      std::to_string(c.num_hidden_layers));

  // Unset dtype: a checkpoint whose matmul weights are all bf16 computes in
  // bf16, anything else in f32.
  if (!options.dtype) {
    bool all_bf16 = true;
    auto check = [&](const WeightSource& w) {
      for (const auto& part : w.parts)
        all_bf16 = all_bf16 && ck.tensor(part.name).dtype == DType::bf16;
    };
    for (const LayerWeightSources& src : layout.layers)
      for (const WeightSource* w : {&src.qkv, &src.o, &src.mlp_in, &src.mlp_out}) check(*w);
    check(layout.lm_head.present() ? layout.lm_head : layout.embed);
    if (all_bf16) impl->dtype = DType::bf16;
  }

  // Every tensor must be one we use or one the family ignores: a stray name
  // usually means a config that does not describe this checkpoint.
  std::vector<std::string> used;
  auto linear = [&](const WeightSource& w, const WeightSource& b, std::size_t k) {
    const std::size_t n = w.rows();
    const std::vector<float> weight = read(ck, w, k, used);
    std::vector<float> bias;
    if (b.present()) {
      if (b.rows() != n)
        throw ConfigError(c.architecture + ": bias '" + b.parts.front().name +
                          "' does not match its weight");
      bias = read(ck, b, 0, used);
    }
    return impl->pack(weight.data(), n, k, bias.empty() ? nullptr : bias.data());
  };
  auto norm = [&](const WeightSource& w, const WeightSource& b) {
    NormWeights nw;
    nw.weight = read(ck, w, 0, used);
    if (c.norm == NormKind::layer_norm) {
      if (!b.present())
        throw ConfigError(c.architecture + ": LayerNorm without a bias in the layout");
      nw.bias = read(ck, b, 0, used);
    }
    return nw;
  };

  LoadProgress progress;
  for (const auto& name : ck.names()) {
    ++progress.tensors_total;
    progress.bytes_total += ck.tensor(name).data.size();
  }
  auto report = [&] {
    if (!options.on_progress) return;
    for (; progress.tensors_done < used.size(); ++progress.tensors_done)
      progress.bytes_done += ck.tensor(used[progress.tensors_done]).data.size();
    options.on_progress(progress);
  };

  impl->embed = read(ck, layout.embed, c.hidden_size, used);
  report();
  if (c.positions == PositionKind::learned)
    impl->pos_embed = read(ck, layout.position_embed, c.hidden_size, used);
  for (const LayerWeightSources& src : layout.layers) {
    Layer L;
    L.attn_norm = norm(src.attn_norm, src.attn_norm_bias);
    L.qkv = linear(src.qkv, src.qkv_bias, c.hidden_size);
    L.o = linear(src.o, src.o_bias, impl->q_dim);
    L.mlp_norm = norm(src.mlp_norm, src.mlp_norm_bias);
    L.mlp_in = linear(src.mlp_in, src.mlp_in_bias, c.hidden_size);
    L.mlp_out = linear(src.mlp_out, src.mlp_out_bias, c.intermediate_size);
    if (L.qkv.n != impl->q_dim + 2 * impl->kv_dim || L.o.n != c.hidden_size ||
        L.mlp_in.n != impl->mlp_in_dim || L.mlp_out.n != c.hidden_size)
      throw ConfigError(c.architecture +
                        ": the registry's layout disagrees with the config's layer shapes");
    impl->layers.push_back(std::move(L));
    report();
  }
  impl->final_norm = norm(layout.final_norm, layout.final_norm_bias);
  if (layout.lm_head.present()) {
    impl->lm_head = linear(layout.lm_head, {}, c.hidden_size);
  } else {  // tied
    impl->lm_head = impl->pack(impl->embed.data(), c.vocab_size, c.hidden_size, nullptr);
  }

  report();
  if (options.on_progress) {
    progress.tensors_done = progress.tensors_total;
    progress.bytes_done = progress.bytes_total;
    options.on_progress(progress);
  }

  std::sort(used.begin(), used.end());
  auto ignored = [&](const std::string& name) {
    if (std::find(layout.ignored.begin(), layout.ignored.end(), name) != layout.ignored.end())
      return true;
    for (const auto& suffix : layout.ignored_suffixes)
      if (name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    return false;
  };
  for (const auto& name : ck.names()) {
    if (std::binary_search(used.begin(), used.end(), name) || ignored(name)) continue;
    throw FormatError(ck.dir().string() + ": unexpected tensor '" + name + "' for " +
                      c.architecture +
                      " with this config (attention_bias=" + (c.attention_bias ? "true" : "false") +
                      ", tie_word_embeddings=" + (c.tie_word_embeddings ? "true" : "false") + ")");
  }
  return Transformer(std::move(impl));
}

Transformer Transformer::random(const ModelConfig& config, std::uint64_t seed,
                                const LoadOptions& options) {
  config.validate("random model config");
  auto impl = std::make_unique<Impl>();
  impl->name = "random " + config.architecture;
  impl->cfg = config;
  impl->opts = options;
  impl->check_supported();
  impl->init_dims();
  const auto& c = impl->cfg;
  std::uint64_t stream = seed * 0x100000001b3ull;  // one stream per tensor, in a fixed order
  auto randv = [&](std::size_t count, float sd) { return random_normal(count, sd, stream++); };
  auto linear = [&](std::size_t n, std::size_t k, bool bias) {
    const std::vector<float> w = randv(n * k, 0.02f);
    const std::vector<float> b = bias ? randv(n, 0.02f) : std::vector<float>{};
    return impl->pack(w.data(), n, k, bias ? b.data() : nullptr);
  };
  auto unit_norm = [&] {
    NormWeights nw;
    nw.weight.assign(c.hidden_size, 1.0f);
    if (c.norm == NormKind::layer_norm) nw.bias.assign(c.hidden_size, 0.0f);
    return nw;
  };
  impl->embed = randv(c.vocab_size * c.hidden_size, 0.02f);
  if (c.positions == PositionKind::learned)
    impl->pos_embed = randv(c.max_position_embeddings * c.hidden_size, 0.02f);
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    Layer L;
    L.attn_norm = unit_norm();
    L.mlp_norm = unit_norm();
    L.qkv = linear(impl->q_dim + 2 * impl->kv_dim, c.hidden_size, c.attention_bias);
    L.o = linear(c.hidden_size, impl->q_dim, c.o_proj_bias);
    L.mlp_in = linear(impl->mlp_in_dim, c.hidden_size, c.mlp_bias);
    L.mlp_out = linear(c.hidden_size, c.intermediate_size, c.mlp_bias);
    impl->layers.push_back(std::move(L));
  }
  impl->final_norm = unit_norm();
  if (c.tie_word_embeddings) {
    impl->lm_head = impl->pack(impl->embed.data(), c.vocab_size, c.hidden_size, nullptr);
  } else {
    impl->lm_head = linear(c.vocab_size, c.hidden_size, false);
  }
  return Transformer(std::move(impl));
}

const ModelConfig& Transformer::config() const { return impl_->cfg; }
std::size_t Transformer::vocab_size() const { return impl_->cfg.vocab_size; }
std::size_t Transformer::weight_bytes() const { return impl_->weight_bytes(); }
std::size_t Transformer::bytes_per_token() const { return impl_->bytes_per_token(); }
DType Transformer::dtype() const { return impl_->dtype; }
PositionLimits Transformer::position_limits() const {
  const ModelConfig& c = impl_->cfg;
  return {c.positions == PositionKind::learned ? c.max_position_embeddings : 0,
          c.max_position_embeddings};
}

Transformer::Cache Transformer::make_cache(std::size_t capacity) const {
  const auto& c = impl_->cfg;
  return Cache(KvStorage(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, capacity));
}

Logits Transformer::forward(std::span<const Token> tokens, Cache& cache) const {
  Logits out;
  impl_->forward(tokens, cache, out);
  return out;
}

void Transformer::forward(std::span<const Token> tokens, Cache& cache, Logits& out) const {
  impl_->forward(tokens, cache, out);
}

}  // namespace assistgen::cpu

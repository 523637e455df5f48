// cpu::Transformer: the decoder forward pass on the CPU for every family of
// the architecture registry (architecture.hpp).
//
// Per layer: norm -> fused QKV matmul -> RoPE (rope families) -> write K/V at
// their positions in the preallocated cache -> causal (optionally
// sliding-window) GQA attention over the cache -> O matmul -> residual ->
// norm -> MLP-in matmul -> activation (gated or plain) -> MLP-out matmul ->
// residual. What differs between families is data in ModelConfig (norm kind,
// positions, gating, activation, window) and the tensor names of the
// registry's CheckpointLayout; the loop below branches on that data in a few
// named places only. Matmuls go through MatmulEngine::run (matmul.hpp); the
// rest is Eigen and plain loops. All activations live in the sequence's
// cache scratch, so a const model serves many sequences at once.
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
#include <numbers>
#include <random>
#include <string>

#include "assistgen/architecture.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "matmul.hpp"

namespace assistgen::cpu {

using detail::LinearWeights;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

namespace {

/// A norm's parameters; `bias` is empty for RMSNorm.
struct NormWeights {
  std::vector<float> weight, bias;
};

struct Layer {
  NormWeights attn_norm, mlp_norm;
  LinearWeights qkv;      // [q_dim + 2 kv_dim, hidden]
  LinearWeights o;        // [hidden, q_dim]
  LinearWeights mlp_in;   // gated: [2 * intermediate, hidden] (gate rows, then up); else [intermediate, hidden]
  LinearWeights mlp_out;  // [hidden, intermediate]
};

// Inverse RoPE frequencies with HF's scaling rules (linear, llama3).
std::vector<double> rope_inv_freq(const ModelConfig& c) {
  const std::size_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (std::size_t i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
  const auto& rs = c.rope_scaling;
  if (rs.type == RopeScaling::Type::linear) {
    for (auto& f : inv) f /= rs.factor;
  } else if (rs.type == RopeScaling::Type::llama3) {
    const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }
  return inv;
}

// Box-Muller normal samples from a 64-bit engine: identical on every platform.
class NormalGen {
 public:
  explicit NormalGen(std::uint64_t seed) : eng_(seed) {}
  float operator()(float stddev) {
    const double u1 = (static_cast<double>(eng_() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(eng_() >> 11) * 0x1.0p-53;
    return static_cast<float>(stddev * std::sqrt(-2.0 * std::log(u1)) *
                              std::cos(2 * std::numbers::pi * u2));
  }

 private:
  std::mt19937_64 eng_;
};

}  // namespace

struct Transformer::Impl {
  ModelConfig cfg;
  LoadOptions opts;
  std::size_t q_dim = 0, kv_dim = 0, mlp_in_dim = 0;
  std::vector<float> embed;      // [vocab, hidden]
  std::vector<float> pos_embed;  // [max_position_embeddings, hidden]; learned positions only
  std::vector<Layer> layers;
  NormWeights final_norm;
  LinearWeights lm_head;  // [vocab, hidden]; a copy of embed when tied
  std::vector<double> inv_freq;
  detail::MatmulEngine mm;

  void init_dims() {
    q_dim = cfg.num_attention_heads * cfg.head_dim;
    kv_dim = cfg.num_key_value_heads * cfg.head_dim;
    mlp_in_dim = (cfg.gated_mlp ? 2 : 1) * cfg.intermediate_size;
    if (cfg.positions == PositionKind::rope) inv_freq = rope_inv_freq(cfg);
  }

  std::size_t weight_bytes() const {
    auto lin = [](const LinearWeights& w) { return w.w.size() + w.b.size(); };
    auto nrm = [](const NormWeights& w) { return w.weight.size() + w.bias.size(); };
    std::size_t n = embed.size() + pos_embed.size() + nrm(final_norm) + lin(lm_head);
    for (const auto& l : layers)
      n += nrm(l.attn_norm) + nrm(l.mlp_norm) + lin(l.qkv) + lin(l.o) + lin(l.mlp_in) + lin(l.mlp_out);
    return n * sizeof(float);
  }

  void check_supported() const {
    if (opts.dtype != DType::f32)
      throw UnsupportedError("cpu::Transformer: compute dtype '" + std::string(dtype_name(opts.dtype)) +
                             "' is not built yet; weights are converted to f32 at load (use f32)");
    architecture_of(cfg);  // throws for an unregistered architecture
  }

  void norm(const float* x, const NormWeights& nw, float* y, std::size_t n) const {
    const auto h = static_cast<Eigen::Index>(cfg.hidden_size);
    const auto eps = static_cast<float>(cfg.norm_eps);
    ConstVecMap w(nw.weight.data(), h);
    for (std::size_t i = 0; i < n; ++i) {
      ConstVecMap xv(x + i * cfg.hidden_size, h);
      VecMap yv(y + i * cfg.hidden_size, h);
      if (cfg.norm == NormKind::rms_norm) {
        const float ms = xv.squaredNorm() / static_cast<float>(h);
        yv = (xv * (1.0f / std::sqrt(ms + eps))).cwiseProduct(w);
      } else {  // LayerNorm: biased variance, as torch.nn.LayerNorm
        const float mean = xv.mean();
        yv = xv.array() - mean;
        const float var = yv.squaredNorm() / static_cast<float>(h);
        yv = (yv * (1.0f / std::sqrt(var + eps))).cwiseProduct(w) + ConstVecMap(nw.bias.data(), h);
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

  // act(x) elementwise, for the configured activation.
  template <class In>
  auto activate(const In& x) const -> Eigen::ArrayXf {
    if (cfg.activation == Activation::silu) return x / (1.0f + (-x).exp());
    // gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + (kC * (x + 0.044715f * x.cube())).tanh());
  }

  Logits forward(std::span<const Token> tokens, TransformerCache& cache) const;
};

Logits Transformer::Impl::forward(std::span<const Token> tokens, TransformerCache& cache) const {
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
  kv.check_append(n);
  const std::size_t pos0 = kv.size();
  const std::size_t total = pos0 + n;
  const bool learned_positions = cfg.positions == PositionKind::learned;
  if (learned_positions && total > cfg.max_position_embeddings)
    throw CapacityError("cpu::Transformer::forward: " + cfg.architecture + " has learned positions 0.." +
                        std::to_string(cfg.max_position_embeddings - 1) +
                        " (n_positions / max_position_embeddings = " +
                        std::to_string(cfg.max_position_embeddings) + "); appending " + std::to_string(n) +
                        " tokens after " + std::to_string(pos0) + " would need position " +
                        std::to_string(total - 1));

  if (opts.threads > 0) omp_set_num_threads(opts.threads);
  const std::size_t H = cfg.hidden_size, I = cfg.intermediate_size, hd = cfg.head_dim;
  const std::size_t nq = cfg.num_attention_heads, nkv = cfg.num_key_value_heads;
  const std::size_t group = nq / nkv, half = hd / 2;
  const std::size_t qkv_w = q_dim + 2 * kv_dim;
  const int threads = omp_get_max_threads();

  // Carve the scratch buffer.
  const std::size_t sz_x = n * H, sz_xn = n * H, sz_qkv = n * qkv_w, sz_att = n * q_dim,
                    sz_mlp = n * mlp_in_dim, sz_act = n * I, sz_rope = n * hd,
                    sz_scores = static_cast<std::size_t>(threads) * total;
  auto& s = cache.scratch_;
  s.resize(sz_x + sz_xn + sz_qkv + sz_att + sz_mlp + sz_act + sz_rope + sz_scores);
  float* x = s.data();
  float* xn = x + sz_x;
  float* qkv = xn + sz_xn;
  float* att = qkv + sz_qkv;
  float* mlp = att + sz_att;
  float* act = mlp + sz_mlp;
  float* rope_cs = act + sz_act;  // per token: cos[half], sin[half]
  float* scores = rope_cs + sz_rope;

  dnnl::stream stream = mm.make_stream();
  auto& dscratch = cache.dnnl_scratch_;

  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t pos = pos0 + i;
    std::copy_n(embed.data() + static_cast<std::size_t>(tokens[i]) * H, H, x + i * H);
    if (learned_positions) {
      Eigen::Map<Eigen::ArrayXf>(x + i * H, static_cast<Eigen::Index>(H)) +=
          Eigen::Map<const Eigen::ArrayXf>(pos_embed.data() + pos * H, static_cast<Eigen::Index>(H));
    } else {
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
    mm.run(L.qkv, xn, n, qkv, dscratch, stream);
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
    // or the last `window` (p - j < window).
    const std::size_t window = cfg.window_of_layer(l);
    const auto tasks = static_cast<std::ptrdiff_t>(n * nq);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < tasks; ++t) {
      const std::size_t i = static_cast<std::size_t>(t) / nq, h = static_cast<std::size_t>(t) % nq;
      const std::size_t g = h / group, p = pos0 + i;
      const std::size_t first = (window != 0 && p + 1 > window) ? p + 1 - window : 0;
      const std::size_t len = p + 1 - first;
      float* sc = scores + static_cast<std::size_t>(omp_get_thread_num()) * total;
      Eigen::Map<const RowMatrix> K(kv.key(l, g, first), static_cast<Eigen::Index>(len),
                                    static_cast<Eigen::Index>(hd));
      Eigen::Map<const RowMatrix> V(kv.value(l, g, first), static_cast<Eigen::Index>(len),
                                    static_cast<Eigen::Index>(hd));
      ConstVecMap q(qkv + i * qkv_w + h * hd, static_cast<Eigen::Index>(hd));
      VecMap sv(sc, static_cast<Eigen::Index>(len));
      sv.noalias() = (K * q) * scale;
      const float mx = sv.maxCoeff();
      sv = (sv.array() - mx).exp();
      sv /= sv.sum();
      VecMap out(att + i * q_dim + h * hd, static_cast<Eigen::Index>(hd));
      out.noalias() = V.transpose() * sv;
    }
    mm.run(L.o, att, n, xn, dscratch, stream);
    Eigen::Map<Eigen::ArrayXf>(x, static_cast<Eigen::Index>(n * H)) +=
        Eigen::Map<const Eigen::ArrayXf>(xn, static_cast<Eigen::Index>(n * H));

    norm(x, L.mlp_norm, xn, n);
    mm.run(L.mlp_in, xn, n, mlp, dscratch, stream);
    const auto Ii = static_cast<Eigen::Index>(I);
    for (std::size_t i = 0; i < n; ++i) {
      Eigen::Map<Eigen::ArrayXf> a(act + i * I, Ii);
      Eigen::Map<const Eigen::ArrayXf> first(mlp + i * mlp_in_dim, Ii);
      if (cfg.gated_mlp)  // act(gate) * up
        a = activate(first) * Eigen::Map<const Eigen::ArrayXf>(mlp + i * mlp_in_dim + I, Ii);
      else
        a = activate(first);
    }
    mm.run(L.mlp_out, act, n, xn, dscratch, stream);
    Eigen::Map<Eigen::ArrayXf>(x, static_cast<Eigen::Index>(n * H)) +=
        Eigen::Map<const Eigen::ArrayXf>(xn, static_cast<Eigen::Index>(n * H));
  }
  norm(x, final_norm, xn, n);
  Logits out(n, cfg.vocab_size);
  mm.run(lm_head, xn, n, out.data(), dscratch, stream);
  kv.commit(n);
  return out;
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
std::vector<float> read(const io::Checkpoint& ck, const WeightSource& src, std::size_t cols,
                        std::vector<std::string>& used) {
  std::vector<float> out;
  out.reserve(src.rows() * std::max<std::size_t>(cols, 1));
  for (const TensorPart& part : src.parts) {
    const io::TensorView& t = ck.tensor(part.name);
    const auto r = static_cast<std::int64_t>(part.rows), c = static_cast<std::int64_t>(cols);
    std::vector<std::int64_t> want = cols == 0 ? std::vector<std::int64_t>{r}
                                     : src.transposed ? std::vector<std::int64_t>{c, r}
                                                      : std::vector<std::int64_t>{r, c};
    if (t.shape != want)
      throw FormatError(ck.dir().string() + ": tensor '" + part.name + "' has shape " + shape_str(t.shape) +
                        " but the config implies " + shape_str(want) +
                        (src.transposed && cols != 0 ? " (Conv1D: [in, out])" : ""));
    std::vector<float> v = t.to_float();
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
  const ModelConfig cfg = ModelConfig::load(dir / "config.json");
  const io::Checkpoint ck(dir);
  return from_checkpoint(cfg, ck, options);
}

Transformer Transformer::from_checkpoint(const ModelConfig& config, const io::Checkpoint& ck,
                                         const LoadOptions& options) {
  config.validate((ck.dir() / "config.json").string());
  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  impl->opts = options;
  impl->check_supported();
  impl->init_dims();
  const auto& c = impl->cfg;
  const CheckpointLayout layout =
      architecture_of(c).layout(c, [&ck](const std::string& name) { return ck.contains(name); });
  if (layout.layers.size() != c.num_hidden_layers)
    throw ConfigError(c.architecture + ": the registry's layout names " + std::to_string(layout.layers.size()) +
                      " layers, the config " + std::to_string(c.num_hidden_layers));

  // Every tensor must be one we use or one the family ignores: a stray name
  // usually means a config that does not describe this checkpoint.
  std::vector<std::string> used;
  auto linear = [&](const WeightSource& w, const WeightSource& b, std::size_t k) {
    LinearWeights lw;
    lw.n = w.rows();
    lw.k = k;
    lw.w = read(ck, w, k, used);
    if (b.present()) {
      if (b.rows() != lw.n)
        throw ConfigError(c.architecture + ": bias '" + b.parts.front().name + "' does not match its weight");
      lw.b = read(ck, b, 0, used);
    }
    return lw;
  };
  auto norm = [&](const WeightSource& w, const WeightSource& b) {
    NormWeights nw;
    nw.weight = read(ck, w, 0, used);
    if (c.norm == NormKind::layer_norm) {
      if (!b.present()) throw ConfigError(c.architecture + ": LayerNorm without a bias in the layout");
      nw.bias = read(ck, b, 0, used);
    }
    return nw;
  };

  impl->embed = read(ck, layout.embed, c.hidden_size, used);
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
    if (L.qkv.n != impl->q_dim + 2 * impl->kv_dim || L.o.n != c.hidden_size || L.mlp_in.n != impl->mlp_in_dim ||
        L.mlp_out.n != c.hidden_size)
      throw ConfigError(c.architecture + ": the registry's layout disagrees with the config's layer shapes");
    impl->layers.push_back(std::move(L));
  }
  impl->final_norm = norm(layout.final_norm, layout.final_norm_bias);
  if (layout.lm_head.present()) {
    impl->lm_head = linear(layout.lm_head, {}, c.hidden_size);
  } else {  // tied
    impl->lm_head.w = impl->embed;
    impl->lm_head.n = c.vocab_size;
    impl->lm_head.k = c.hidden_size;
  }

  std::sort(used.begin(), used.end());
  auto ignored = [&](const std::string& name) {
    if (std::find(layout.ignored.begin(), layout.ignored.end(), name) != layout.ignored.end()) return true;
    for (const auto& suffix : layout.ignored_suffixes)
      if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    return false;
  };
  for (const auto& name : ck.names()) {
    if (std::binary_search(used.begin(), used.end(), name) || ignored(name)) continue;
    throw FormatError(ck.dir().string() + ": unexpected tensor '" + name + "' for " + c.architecture +
                      " with this config (attention_bias=" + (c.attention_bias ? "true" : "false") +
                      ", tie_word_embeddings=" + (c.tie_word_embeddings ? "true" : "false") + ")");
  }
  return Transformer(std::move(impl));
}

Transformer Transformer::random(const ModelConfig& config, std::uint64_t seed, const LoadOptions& options) {
  config.validate("random model config");
  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  impl->opts = options;
  impl->check_supported();
  impl->init_dims();
  const auto& c = impl->cfg;
  NormalGen gen(seed);
  auto randv = [&](std::size_t count, float sd) {
    std::vector<float> v(count);
    for (auto& e : v) e = gen(sd);
    return v;
  };
  auto linear = [&](std::size_t n, std::size_t k, bool bias) {
    LinearWeights w;
    w.n = n;
    w.k = k;
    w.w = randv(n * k, 0.02f);
    if (bias) w.b = randv(n, 0.02f);
    return w;
  };
  auto unit_norm = [&] {
    NormWeights nw;
    nw.weight.assign(c.hidden_size, 1.0f);
    if (c.norm == NormKind::layer_norm) nw.bias.assign(c.hidden_size, 0.0f);
    return nw;
  };
  impl->embed = randv(c.vocab_size * c.hidden_size, 0.02f);
  if (c.positions == PositionKind::learned) impl->pos_embed = randv(c.max_position_embeddings * c.hidden_size, 0.02f);
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
    impl->lm_head.w = impl->embed;
    impl->lm_head.n = c.vocab_size;
    impl->lm_head.k = c.hidden_size;
  } else {
    impl->lm_head = linear(c.vocab_size, c.hidden_size, false);
  }
  return Transformer(std::move(impl));
}

const ModelConfig& Transformer::config() const { return impl_->cfg; }
std::size_t Transformer::vocab_size() const { return impl_->cfg.vocab_size; }
std::size_t Transformer::weight_bytes() const { return impl_->weight_bytes(); }

Transformer::Cache Transformer::make_cache(std::size_t capacity) const {
  const auto& c = impl_->cfg;
  return Cache(KvStorage(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, capacity));
}

Logits Transformer::forward(std::span<const Token> tokens, Cache& cache) const {
  return impl_->forward(tokens, cache);
}

}  // namespace assistgen::cpu

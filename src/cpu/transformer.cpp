// cpu::Transformer: Llama-family forward pass on the CPU.
//
// Per layer: RMSNorm -> fused QKV matmul -> RoPE -> write K/V at their
// positions in the preallocated cache -> causal GQA attention over the cache
// -> O matmul -> residual -> RMSNorm -> fused gate/up matmul -> SiLU * up ->
// down matmul -> residual. Matmuls go through oneDNN (matmul.hpp); the rest
// is Eigen and plain loops. All activations live in the sequence's cache
// scratch, so a const model serves many sequences at once.
#include "assistgen/cpu/transformer.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <string>

#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "matmul.hpp"

namespace assistgen::cpu {

using detail::LinearWeights;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

namespace {

struct Layer {
  std::vector<float> attn_norm, mlp_norm;
  LinearWeights qkv;      // [q_dim + 2 kv_dim, hidden]
  LinearWeights o;        // [hidden, q_dim]
  LinearWeights gate_up;  // [2 * intermediate, hidden]
  LinearWeights down;     // [hidden, intermediate]
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
  std::size_t q_dim = 0, kv_dim = 0;
  std::vector<float> embed;  // [vocab, hidden]
  std::vector<Layer> layers;
  std::vector<float> final_norm;
  LinearWeights lm_head;  // [vocab, hidden]; a copy of embed when tied
  std::vector<double> inv_freq;
  detail::MatmulEngine mm;

  std::size_t weight_bytes() const {
    std::size_t n = embed.size() + final_norm.size() + lm_head.w.size();
    for (const auto& l : layers)
      n += l.attn_norm.size() + l.mlp_norm.size() + l.qkv.w.size() + l.qkv.b.size() +
           l.o.w.size() + l.o.b.size() + l.gate_up.w.size() + l.gate_up.b.size() +
           l.down.w.size() + l.down.b.size();
    return n * sizeof(float);
  }

  void check_supported() const {
    if (opts.dtype != DType::f32)
      throw UnsupportedError("cpu::Transformer: compute dtype '" + std::string(dtype_name(opts.dtype)) +
                             "' is not built yet; weights are converted to f32 at load (use f32)");
    if (cfg.head_dim % 2 != 0)
      throw ConfigError("cpu::Transformer: head_dim " + std::to_string(cfg.head_dim) +
                        " must be even for RoPE");
  }

  void rmsnorm(const float* x, const std::vector<float>& w, float* y, std::size_t n) const {
    const auto h = static_cast<Eigen::Index>(cfg.hidden_size);
    ConstVecMap wv(w.data(), h);
    for (std::size_t i = 0; i < n; ++i) {
      ConstVecMap xv(x + i * cfg.hidden_size, h);
      VecMap yv(y + i * cfg.hidden_size, h);
      const float ms = xv.squaredNorm() / static_cast<float>(h);
      const float r = 1.0f / std::sqrt(ms + static_cast<float>(cfg.rms_norm_eps));
      yv = (xv * r).cwiseProduct(wv);
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
  if (cfg.sliding_window != 0 && total > cfg.sliding_window)
    throw UnsupportedError("sliding-window attention is not supported yet: sequence length " +
                           std::to_string(total) + " exceeds sliding_window " +
                           std::to_string(cfg.sliding_window) + " of " + cfg.architecture);

  if (opts.threads > 0) omp_set_num_threads(opts.threads);
  const std::size_t H = cfg.hidden_size, I = cfg.intermediate_size, hd = cfg.head_dim;
  const std::size_t nq = cfg.num_attention_heads, nkv = cfg.num_key_value_heads;
  const std::size_t group = nq / nkv, half = hd / 2;
  const std::size_t qkv_w = q_dim + 2 * kv_dim;
  const int threads = omp_get_max_threads();

  // Carve the scratch buffer.
  const std::size_t sz_x = n * H, sz_xn = n * H, sz_qkv = n * qkv_w, sz_att = n * q_dim,
                    sz_gu = n * 2 * I, sz_act = n * I, sz_rope = n * hd,
                    sz_scores = static_cast<std::size_t>(threads) * total;
  auto& s = cache.scratch_;
  s.resize(sz_x + sz_xn + sz_qkv + sz_att + sz_gu + sz_act + sz_rope + sz_scores);
  float* x = s.data();
  float* xn = x + sz_x;
  float* qkv = xn + sz_xn;
  float* att = qkv + sz_qkv;
  float* gu = att + sz_att;
  float* act = gu + sz_gu;
  float* rope_cs = act + sz_act;  // per token: cos[half], sin[half]
  float* scores = rope_cs + sz_rope;

  dnnl::stream stream = mm.make_stream();
  auto& dscratch = cache.dnnl_scratch_;

  for (std::size_t i = 0; i < n; ++i) {
    std::copy_n(embed.data() + static_cast<std::size_t>(tokens[i]) * H, H, x + i * H);
    const double pos = static_cast<double>(pos0 + i);
    for (std::size_t j = 0; j < half; ++j) {
      const double a = pos * inv_freq[j];
      rope_cs[i * hd + j] = static_cast<float>(std::cos(a));
      rope_cs[i * hd + half + j] = static_cast<float>(std::sin(a));
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (std::size_t l = 0; l < layers.size(); ++l) {
    const Layer& L = layers[l];
    rmsnorm(x, L.attn_norm, xn, n);
    mm.run(L.qkv, xn, n, qkv, dscratch, stream);
    for (std::size_t i = 0; i < n; ++i) {
      float* row = qkv + i * qkv_w;
      const float* c = rope_cs + i * hd;
      for (std::size_t h = 0; h < nq; ++h) rope(row + h * hd, c, c + half);
      for (std::size_t h = 0; h < nkv; ++h) {
        float* k = row + q_dim + h * hd;
        rope(k, c, c + half);
        std::copy_n(k, hd, kv.key(l, h, pos0 + i));
        std::copy_n(row + q_dim + kv_dim + h * hd, hd, kv.value(l, h, pos0 + i));
      }
    }
    // Causal attention: token i sees positions [0, pos0 + i].
    const auto tasks = static_cast<std::ptrdiff_t>(n * nq);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < tasks; ++t) {
      const std::size_t i = static_cast<std::size_t>(t) / nq, h = static_cast<std::size_t>(t) % nq;
      const std::size_t g = h / group, len = pos0 + i + 1;
      float* sc = scores + static_cast<std::size_t>(omp_get_thread_num()) * total;
      Eigen::Map<const RowMatrix> K(kv.key(l, g, 0), static_cast<Eigen::Index>(len),
                                    static_cast<Eigen::Index>(hd));
      Eigen::Map<const RowMatrix> V(kv.value(l, g, 0), static_cast<Eigen::Index>(len),
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

    rmsnorm(x, L.mlp_norm, xn, n);
    mm.run(L.gate_up, xn, n, gu, dscratch, stream);
    for (std::size_t i = 0; i < n; ++i) {
      Eigen::Map<const Eigen::ArrayXf> g(gu + i * 2 * I, static_cast<Eigen::Index>(I));
      Eigen::Map<const Eigen::ArrayXf> u(gu + i * 2 * I + I, static_cast<Eigen::Index>(I));
      Eigen::Map<Eigen::ArrayXf> a(act + i * I, static_cast<Eigen::Index>(I));
      a = g / (1.0f + (-g).exp()) * u;
    }
    mm.run(L.down, act, n, xn, dscratch, stream);
    Eigen::Map<Eigen::ArrayXf>(x, static_cast<Eigen::Index>(n * H)) +=
        Eigen::Map<const Eigen::ArrayXf>(xn, static_cast<Eigen::Index>(n * H));
  }
  rmsnorm(x, final_norm, xn, n);
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

// Reads a tensor as float after checking its shape against the config.
std::vector<float> read(const io::Checkpoint& ck, const std::string& name,
                        std::vector<std::int64_t> shape) {
  const io::TensorView& t = ck.tensor(name);
  if (t.shape != shape)
    throw FormatError(ck.dir().string() + ": tensor '" + name + "' has shape " + shape_str(t.shape) +
                      " but the config implies " + shape_str(shape));
  return t.to_float();
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
  const auto& c = impl->cfg;
  const auto H = static_cast<std::int64_t>(c.hidden_size), I = static_cast<std::int64_t>(c.intermediate_size),
             V = static_cast<std::int64_t>(c.vocab_size);
  const auto qd = static_cast<std::int64_t>(c.num_attention_heads * c.head_dim);
  const auto kvd = static_cast<std::int64_t>(c.num_key_value_heads * c.head_dim);
  impl->q_dim = static_cast<std::size_t>(qd);
  impl->kv_dim = static_cast<std::size_t>(kvd);

  // Every tensor must be one we use: a stray name usually means a config that
  // does not describe this checkpoint.
  std::vector<std::string> expected;
  auto use = [&](const std::string& name, std::vector<std::int64_t> shape) {
    expected.push_back(name);
    return read(ck, name, std::move(shape));
  };
  auto cat = [](std::vector<std::vector<float>> parts) {
    std::vector<float> r;
    for (auto& p : parts) r.insert(r.end(), p.begin(), p.end());
    return r;
  };

  impl->embed = use("model.embed_tokens.weight", {V, H});
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = use(p + "input_layernorm.weight", {H});
    L.mlp_norm = use(p + "post_attention_layernorm.weight", {H});
    L.qkv.w = cat({use(p + "self_attn.q_proj.weight", {qd, H}), use(p + "self_attn.k_proj.weight", {kvd, H}),
                   use(p + "self_attn.v_proj.weight", {kvd, H})});
    L.qkv.n = static_cast<std::size_t>(qd + 2 * kvd);
    L.qkv.k = c.hidden_size;
    if (c.attention_bias)
      L.qkv.b = cat({use(p + "self_attn.q_proj.bias", {qd}), use(p + "self_attn.k_proj.bias", {kvd}),
                     use(p + "self_attn.v_proj.bias", {kvd})});
    L.o.w = use(p + "self_attn.o_proj.weight", {H, qd});
    L.o.n = c.hidden_size;
    L.o.k = static_cast<std::size_t>(qd);
    if (c.o_proj_bias) L.o.b = use(p + "self_attn.o_proj.bias", {H});
    L.gate_up.w = cat({use(p + "mlp.gate_proj.weight", {I, H}), use(p + "mlp.up_proj.weight", {I, H})});
    L.gate_up.n = 2 * c.intermediate_size;
    L.gate_up.k = c.hidden_size;
    if (c.mlp_bias)
      L.gate_up.b = cat({use(p + "mlp.gate_proj.bias", {I}), use(p + "mlp.up_proj.bias", {I})});
    L.down.w = use(p + "mlp.down_proj.weight", {H, I});
    L.down.n = c.hidden_size;
    L.down.k = c.intermediate_size;
    if (c.mlp_bias) L.down.b = use(p + "mlp.down_proj.bias", {H});
    impl->layers.push_back(std::move(L));
  }
  impl->final_norm = use("model.norm.weight", {H});
  if (c.tie_word_embeddings) {
    impl->lm_head.w = impl->embed;
    // Some tied checkpoints also store lm_head.weight; HF ignores it.
    if (ck.contains("lm_head.weight")) expected.push_back("lm_head.weight");
  } else {
    impl->lm_head.w = use("lm_head.weight", {V, H});
  }
  impl->lm_head.n = c.vocab_size;
  impl->lm_head.k = c.hidden_size;

  std::sort(expected.begin(), expected.end());
  for (const auto& name : ck.names()) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed
    if (!std::binary_search(expected.begin(), expected.end(), name))
      throw FormatError(ck.dir().string() + ": unexpected tensor '" + name + "' for " + c.architecture +
                        " with this config (attention_bias=" + (c.attention_bias ? "true" : "false") +
                        ", tie_word_embeddings=" + (c.tie_word_embeddings ? "true" : "false") + ")");
  }
  impl->inv_freq = rope_inv_freq(c);
  return Transformer(std::move(impl));
}

Transformer Transformer::random(const ModelConfig& config, std::uint64_t seed, const LoadOptions& options) {
  config.validate("random model config");
  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  impl->opts = options;
  impl->check_supported();
  const auto& c = impl->cfg;
  impl->q_dim = c.num_attention_heads * c.head_dim;
  impl->kv_dim = c.num_key_value_heads * c.head_dim;
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
  impl->embed = randv(c.vocab_size * c.hidden_size, 0.02f);
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    Layer L;
    L.attn_norm.assign(c.hidden_size, 1.0f);
    L.mlp_norm.assign(c.hidden_size, 1.0f);
    L.qkv = linear(impl->q_dim + 2 * impl->kv_dim, c.hidden_size, c.attention_bias);
    L.o = linear(c.hidden_size, impl->q_dim, c.o_proj_bias);
    L.gate_up = linear(2 * c.intermediate_size, c.hidden_size, c.mlp_bias);
    L.down = linear(c.hidden_size, c.intermediate_size, c.mlp_bias);
    impl->layers.push_back(std::move(L));
  }
  impl->final_norm.assign(c.hidden_size, 1.0f);
  if (c.tie_word_embeddings) {
    impl->lm_head.w = impl->embed;
    impl->lm_head.n = c.vocab_size;
    impl->lm_head.k = c.hidden_size;
  } else {
    impl->lm_head = linear(c.vocab_size, c.hidden_size, false);
  }
  impl->inv_freq = rope_inv_freq(c);
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

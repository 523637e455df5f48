// hpu::Transformer: loads an HF checkpoint onto a Device and runs each
// forward pass as one launch (per chunk) of the bucket's compiled graph.
// Host work per launch is only the small inputs: ids, write index, RoPE
// cos/sin for the positions, and the mask; everything else stays on the device.
#include "assistgen/hpu/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>

#include "assistgen/architecture.hpp"
#include "assistgen/detail/token_checks.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/safetensors.hpp"
#include "decoder_graph.hpp"
#include "low_precision.hpp"

namespace assistgen::hpu {
namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

std::size_t TransformerCache::bytes() const {
  return kv_.bytes() + ids_.bytes() + index_.bytes() + cos_.bytes() + sin_.bytes() + mask_.bytes() +
         window_mask_.bytes() + logits_.bytes() + workspace_.bytes();
}

struct Transformer::Impl {
  ModelConfig cfg;
  LoadOptions opts;
  std::string name;  // the checkpoint directory, for messages
  std::shared_ptr<Device> device;
  Bucketing buckets;
  detail::DecoderSpec spec;
  KvLayout layout;
  std::vector<double> inv_freq;
  std::vector<std::string> kv_names;  // "l<i>.k_cache", "l<i>.v_cache" per layer, bound every launch
  std::vector<std::pair<std::string, DeviceBuffer>> weights;
  std::vector<Binding> weight_bindings;
  std::unique_ptr<GraphCache> graphs;
  std::vector<GraphKey> keys;  // key(b) of every bucket of `buckets`, made at load

  explicit Impl(const LoadOptions& o) : opts(o), buckets(o.buckets) {}

  GraphKey key(const Bucket& b) const {
    return {spec.kind(), spec.weights, b.batch, b.tokens, b.kv_len};
  }
  std::shared_ptr<const Recipe> recipe(const Bucket& b) const {
    auto build = [&](const GraphKey& k) {
      return detail::build_decoder_graph(spec, k.batch, k.tokens, k.kv_len);
    };
    // The keys of the configured buckets are made once (a key holds the
    // kind string), so a warm forward call builds no string.
    for (const GraphKey& k : keys)
      if (k.batch == b.batch && k.tokens == b.tokens && k.kv_len == b.kv_len)
        return graphs->get(k, build);
    return graphs->get(key(b), build);
  }

  void upload_bytes(const std::string& name, const void* data, std::size_t bytes) {
    DeviceBuffer buf(device, bytes);
    buf.upload(data, bytes);
    weight_bindings.push_back({name, buf.address()});
    weights.emplace_back(name, std::move(buf));
  }
  void upload(const std::string& name, const std::vector<float>& data) {
    upload_bytes(name, data.data(), data.size() * sizeof(float));
  }
  // A matmul weight [rows, cols] named "<base>.w" (or `w_name`) in the
  // graph's weight type: f32 as is, bf16 rounded to nearest even, f8_e4m3
  // quantized with its scales as "<base>.scale".
  void upload_matmul(const std::string& base, const std::string& w_name,
                     const std::vector<float>& w, std::size_t rows, std::size_t cols) {
    switch (spec.weights) {
      case DType::f32:
        upload(w_name, w);
        return;
      case DType::bf16: {
        std::vector<std::uint16_t> h(w.size());
        for (std::size_t i = 0; i < w.size(); ++i) h[i] = io::float_to_bf16(w[i]);
        upload_bytes(w_name, h.data(), h.size() * sizeof(std::uint16_t));
        return;
      }
      default: {
        const detail::Fp8Weight q = detail::quantize_fp8(w, rows, cols, spec.per_channel);
        upload_bytes(w_name, q.codes.data(), q.codes.size());
        upload(base + ".scale", q.scales);
        return;
      }
    }
  }

  void finish_setup() {
    if (opts.dtype != DType::f32 && opts.dtype != DType::bf16 && opts.dtype != DType::f8_e4m3)
      throw UnsupportedError("hpu::Transformer: LoadOptions::dtype '" +
                             std::string(dtype_name(opts.dtype)) +
                             "' is not a compute type of the HPU graphs (f32, bf16, f8_e4m3)");
    // The graph covers the registry's decoder families: RMSNorm + RoPE +
    // gated SiLU (Llama, Mistral, Qwen2) and LayerNorm + learned positions
    // + gelu_tanh (GPT-2); other combinations have no graph.
    const bool llama = cfg.norm == NormKind::rms_norm && cfg.positions == PositionKind::rope &&
                       cfg.gated_mlp && cfg.activation == Activation::silu;
    const bool gpt2 = cfg.norm == NormKind::layer_norm && cfg.positions == PositionKind::learned &&
                      !cfg.gated_mlp && cfg.activation == Activation::gelu_tanh;
    if (!llama && !gpt2)
      throw UnsupportedError("hpu::Transformer: " + cfg.architecture +
                             " is not supported; the HPU graph covers RMSNorm + RoPE + gated SiLU "
                             "(Llama, Mistral, Qwen2) and LayerNorm + learned positions + gelu_tanh "
                             "(GPT-2)");
    if (cfg.positions == PositionKind::rope && cfg.head_dim % 2 != 0)
      throw ConfigError("hpu::Transformer: head_dim " + std::to_string(cfg.head_dim) +
                        " must be even for RoPE");
    layout = {cfg.num_hidden_layers, buckets.max_batch(), cfg.num_key_value_heads,
              buckets.max_kv_len(), cfg.head_dim};
    spec = detail::DecoderSpec::from(cfg, layout.slots(), opts.dtype, opts.fp8_per_channel);
    if (cfg.positions == PositionKind::rope) inv_freq = rope_inverse_frequencies(cfg);
    for (std::size_t l = 0; l < cfg.num_hidden_layers; ++l) {
      kv_names.push_back(detail::layer_name(l, "k_cache"));
      kv_names.push_back(detail::layer_name(l, "v_cache"));
    }
    for (const Bucket& b : buckets.all()) keys.push_back(key(b));
    const std::size_t n_buckets = keys.size();
    const std::size_t capacity = opts.graph_cache_capacity ? opts.graph_cache_capacity : n_buckets;
    GraphCache::CompileFn compile = opts.compile;
    if (!compile) compile = [dev = device](const Graph& g) { return dev->compile(g); };
    graphs = std::make_unique<GraphCache>(capacity, std::move(compile));
  }

  void forward(std::span<const Token> tokens, TransformerCache& cache, Logits& out) const;
};

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
  // With bound_by_model (options_for sets it), the model bounds the sizes,
  // not the caller: no kv_len bucket (so no warm-up graph, no cache slot)
  // beyond max_position_embeddings rounded up to the bucket step, however
  // many positions were asked for.
  LoadOptions bounded = options;
  auto& kv = bounded.buckets.kv_len;
  if (options.bound_by_model && kv.step >= 1 && kv.max > config.max_position_embeddings) {
    const std::size_t cap =
        (config.max_position_embeddings + kv.step - 1) / kv.step * kv.step;
    kv.max = std::max(cap, kv.min);
  }
  auto impl = std::make_unique<Impl>(bounded);
  impl->name = ck.dir().string();
  impl->cfg = config;
  impl->device = options.device ? options.device : make_cpu_reference_device();
  impl->finish_setup();
  const auto& c = impl->cfg;
  using I = std::int64_t;

  std::vector<std::string> expected;
  // A weight as [rows, cols] (cols 0: a vector), its parts stacked along the
  // rows and Conv1D parts ([in, out], GPT-2) transposed, as the CPU backend
  // reads it; a stored shape the config does not imply is a FormatError.
  auto read = [&](const WeightSource& src, std::size_t cols, const char* what) {
    if (!src.present())
      throw UnsupportedError("hpu::Transformer: " + c.architecture + " has no " + what +
                             " in its checkpoint layout");
    std::vector<float> out;
    for (const TensorPart& part : src.parts) {
      expected.push_back(part.name);
      const io::TensorView& t = ck.tensor(part.name);
      const auto r = static_cast<I>(part.rows), k = static_cast<I>(cols);
      const std::vector<I> want = cols == 0        ? std::vector<I>{r}
                                  : src.transposed ? std::vector<I>{k, r}
                                                   : std::vector<I>{r, k};
      if (t.shape != want)
        throw FormatError(ck.dir().string() + ": tensor '" + part.name + "' has shape " +
                          shape_str(t.shape) + " but the config implies " + shape_str(want) +
                          (src.transposed && cols != 0 ? " (Conv1D: [in, out])" : ""));
      std::vector<float> v = t.to_finite_float();
      if (src.transposed && cols != 0) {
        std::vector<float> tr(v.size());
        for (std::size_t i = 0; i < part.rows; ++i)
          for (std::size_t j = 0; j < cols; ++j) tr[i * cols + j] = v[j * part.rows + i];
        v.swap(tr);
      }
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  };
  // Rows [begin, begin + rows) of a [*, cols] matrix (or a vector when cols is 0).
  auto rows_of = [](const std::vector<float>& m, std::size_t begin, std::size_t rows,
                    std::size_t cols) {
    const std::size_t w = std::max<std::size_t>(cols, 1);
    return std::vector<float>(m.begin() + static_cast<std::ptrdiff_t>(begin * w),
                              m.begin() + static_cast<std::ptrdiff_t>((begin + rows) * w));
  };
  auto check_rows = [&](const WeightSource& src, std::size_t rows, const char* what) {
    if (src.rows() != rows)
      throw FormatError(ck.dir().string() + ": " + what + " has " + std::to_string(src.rows()) +
                        " rows but the config implies " + std::to_string(rows));
  };
  // 1/sqrt(head_dim) folded into the query projection: RoPE is linear, so
  // scaling q before it equals scaling the scores after the q.k product.
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  auto scaled = [&](std::vector<float> v) {
    if (!impl->spec.q_scale_folded()) return v;
    for (auto& e : v) e *= q_scale;
    return v;
  };
  if (!impl->spec.q_scale_folded()) impl->upload("attn_scale", {q_scale});
  auto& im = *impl;
  auto matmul = [&](const std::string& base, const std::vector<float>& w, std::size_t rows,
                    std::size_t cols) { im.upload_matmul(base, base + ".w", w, rows, cols); };

  // Tensor names from the architecture registry, as the CPU backend reads
  // them; the graph wants q, k, v (and gate, up) as separate weights, so a
  // fused weight (parts, or one stored tensor as GPT-2's c_attn) is split by rows.
  const CheckpointLayout w =
      architecture_of(c).layout(c, [&](const std::string& name) { return ck.contains(name); });
  const std::size_t Hs = c.hidden_size, Fs = c.intermediate_size, qds = c.num_attention_heads * c.head_dim,
                    kvs = c.num_key_value_heads * c.head_dim;
  const std::vector<float> embed = read(w.embed, Hs, "embedding");
  check_rows(w.embed, c.vocab_size, "the embedding");
  im.upload("embed", embed);
  if (c.positions == PositionKind::learned) {
    check_rows(w.position_embed, c.max_position_embeddings, "the position embedding");
    im.upload("pos_embed", read(w.position_embed, Hs, "position embedding"));
  }
  auto norm = [&](const std::string& name, const WeightSource& wt, const WeightSource& b) {
    check_rows(wt, Hs, name.c_str());
    im.upload(name, read(wt, 0, "norm"));
    if (c.norm == NormKind::layer_norm) {
      check_rows(b, Hs, name.c_str());
      im.upload(name + ".b", read(b, 0, "norm bias"));
    }
  };
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeightSources& L = w.layers.at(l);
    auto nm = [&](const char* what) { return detail::layer_name(l, what); };
    norm(nm("attn_norm"), L.attn_norm, L.attn_norm_bias);
    norm(nm("mlp_norm"), L.mlp_norm, L.mlp_norm_bias);
    check_rows(L.qkv, qds + 2 * kvs, "the qkv projection");
    const std::vector<float> qkv = read(L.qkv, Hs, "qkv projection");
    matmul(nm("q"), scaled(rows_of(qkv, 0, qds, Hs)), qds, Hs);
    matmul(nm("k"), rows_of(qkv, qds, kvs, Hs), kvs, Hs);
    matmul(nm("v"), rows_of(qkv, qds + kvs, kvs, Hs), kvs, Hs);
    if (c.attention_bias) {
      check_rows(L.qkv_bias, qds + 2 * kvs, "the qkv bias");
      const std::vector<float> b = read(L.qkv_bias, 0, "qkv bias");
      im.upload(nm("q.b"), scaled(rows_of(b, 0, qds, 0)));
      im.upload(nm("k.b"), rows_of(b, qds, kvs, 0));
      im.upload(nm("v.b"), rows_of(b, qds + kvs, kvs, 0));
    }
    check_rows(L.o, Hs, "the o projection");
    matmul(nm("o"), read(L.o, qds, "o projection"), Hs, qds);
    if (c.o_proj_bias) im.upload(nm("o.b"), read(L.o_bias, 0, "o bias"));
    const std::size_t mlp_rows = c.gated_mlp ? 2 * Fs : Fs;
    check_rows(L.mlp_in, mlp_rows, "the MLP input projection");
    const std::vector<float> mi = read(L.mlp_in, Hs, "MLP input projection");
    if (c.gated_mlp) {
      matmul(nm("gate"), rows_of(mi, 0, Fs, Hs), Fs, Hs);
      matmul(nm("up"), rows_of(mi, Fs, Fs, Hs), Fs, Hs);
    } else {
      matmul(nm("up"), mi, Fs, Hs);
    }
    check_rows(L.mlp_out, Hs, "the MLP output projection");
    matmul(nm("down"), read(L.mlp_out, Fs, "MLP output projection"), Hs, Fs);
    if (c.mlp_bias) {
      check_rows(L.mlp_in_bias, mlp_rows, "the MLP input bias");
      const std::vector<float> b = read(L.mlp_in_bias, 0, "MLP input bias");
      if (c.gated_mlp) {
        im.upload(nm("gate.b"), rows_of(b, 0, Fs, 0));
        im.upload(nm("up.b"), rows_of(b, Fs, Fs, 0));
      } else {
        im.upload(nm("up.b"), b);
      }
      im.upload(nm("down.b"), read(L.mlp_out_bias, 0, "MLP output bias"));
    }
  }
  norm("final_norm", w.final_norm, w.final_norm_bias);
  // Tied with f32 weights: the graph's lm_head gemm reads "embed" directly (a
  // stored copy is in w.ignored, as HF ignores it); with bf16 / fp8 weights
  // the head is the embedding rounded to that type.
  if (w.lm_head.present()) {
    check_rows(w.lm_head, c.vocab_size, "lm_head");
    im.upload_matmul("lm_head", "lm_head", read(w.lm_head, Hs, "LM head"), c.vocab_size, Hs);
  } else if (!im.spec.head_is_embed()) {
    im.upload_matmul("lm_head", "lm_head", embed, c.vocab_size, Hs);
  }
  std::sort(expected.begin(), expected.end());
  for (const auto& name : ck.names()) {
    if (std::binary_search(expected.begin(), expected.end(), name)) continue;
    if (std::find(w.ignored.begin(), w.ignored.end(), name) != w.ignored.end()) continue;
    if (std::any_of(w.ignored_suffixes.begin(), w.ignored_suffixes.end(), [&](const std::string& suffix) {
          return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        }))
      continue;
    throw FormatError(ck.dir().string() + ": unexpected tensor '" + name + "' for " + c.architecture +
                      " with this config");
  }
  Transformer t(std::move(impl));
  if (options.warmup) t.warmup();
  return t;
}

const ModelConfig& Transformer::config() const { return impl_->cfg; }
std::size_t Transformer::vocab_size() const { return impl_->cfg.vocab_size; }
PositionLimits Transformer::position_limits() const {
  return {0, impl_->cfg.max_position_embeddings};
}
const Device& Transformer::device() const { return *impl_->device; }
const Bucketing& Transformer::bucketing() const { return impl_->buckets; }
const GraphCache& Transformer::graph_cache() const { return *impl_->graphs; }
std::vector<Bucket> Transformer::warmup_buckets() const { return impl_->buckets.all(); }

std::size_t Transformer::warmup() const {
  const auto all = impl_->buckets.all();
  if (all.size() > impl_->graphs->capacity())
    throw ConfigError("hpu::Transformer::warmup: " + std::to_string(all.size()) +
                      " buckets do not fit a graph cache of " +
                      std::to_string(impl_->graphs->capacity()) +
                      " (raise LoadOptions::graph_cache_capacity or narrow the bucket ranges)");
  std::size_t compiled = 0;
  for (const auto& b : all) {
    if (impl_->graphs->contains(impl_->key(b))) continue;
    impl_->recipe(b);
    ++compiled;
  }
  return compiled;
}

Transformer::Cache Transformer::make_cache(std::size_t capacity) const {
  const auto& L = impl_->layout;
  const auto& bk = impl_->buckets;
  if (impl_->opts.bound_by_model && capacity > L.max_len)
    throw CapacityError("hpu::Transformer::make_cache: " + std::to_string(capacity) +
                        " positions exceed the model's max_position_embeddings (" +
                        std::to_string(impl_->cfg.max_position_embeddings) +
                        ", config.json), which bounds the kv_len buckets (LoadOptions::bound_by_model)");
  Cache c;
  c.kv_ = StaticKvCache(impl_->device, L, capacity);
  const std::size_t B = bk.max_batch(), T = bk.max_tokens(), half = impl_->cfg.head_dim / 2;
  auto& dev = impl_->device;
  c.ids_ = DeviceBuffer(dev, B * T * sizeof(std::int32_t));
  c.index_ = DeviceBuffer(dev, T * sizeof(std::int32_t));
  // RoPE: cos and sin [T, half]; learned positions: the ids [B, T] in cos_.
  c.cos_ = DeviceBuffer(dev, std::max(T * half * sizeof(float), B * T * sizeof(std::int32_t)));
  if (!impl_->spec.learned_positions) c.sin_ = DeviceBuffer(dev, T * half * sizeof(float));
  c.mask_ = DeviceBuffer(dev, B * T * bk.max_kv_len() * sizeof(float));
  if (impl_->spec.has_window_mask()) c.window_mask_ = DeviceBuffer(dev, c.mask_.bytes());
  c.logits_ = DeviceBuffer(dev, B * T * impl_->cfg.vocab_size * sizeof(float));
  return c;
}

Logits Transformer::forward(std::span<const Token> tokens, Cache& cache) const {
  Logits out;
  impl_->forward(tokens, cache, out);
  return out;
}

void Transformer::forward(std::span<const Token> tokens, Cache& cache, Logits& out) const {
  impl_->forward(tokens, cache, out);
}

namespace {

// Host-side staging of one forward call, per thread and reused (as the CPU
// backend's workspace), so a decoding loop that keeps its Logits allocates
// no host memory per step once warm.
struct HostStaging {
  std::vector<Binding> bind;
  std::vector<std::int32_t> ids, index, positions;
  std::vector<float> cs, sn, mask, window_mask;
};

HostStaging& host_staging() {
  thread_local HostStaging staging;
  return staging;
}

}  // namespace

void Transformer::Impl::forward(std::span<const Token> tokens, TransformerCache& cache, Logits& out) const {
  const std::size_t n = tokens.size();
  if (n == 0) throw InvalidArgument("hpu::Transformer::forward: no tokens to append");
  assistgen::detail::check_token_ids(tokens, cfg.vocab_size);
  StaticKvCache& kv = cache.kv_;
  const KvLayout& cl = kv.layout();
  if (cl.layers != layout.layers || cl.kv_heads != layout.kv_heads ||
      cl.head_dim != layout.head_dim || cl.max_len != layout.max_len || cl.batch != layout.batch ||
      !cache.logits_ ||
      cache.logits_.bytes() < layout.batch * buckets.max_tokens() * cfg.vocab_size * sizeof(float))
    throw InvalidArgument(
        "hpu::Transformer::forward: the cache was made by a model of another shape");
  kv.check_append(n);
  const std::size_t pos0 = kv.size();
  const bool learned = spec.learned_positions;
  if (learned && pos0 + n > cfg.max_position_embeddings)
    throw CapacityError("hpu::Transformer::forward: " + cfg.architecture + " has learned positions 0.." +
                        std::to_string(cfg.max_position_embeddings - 1) +
                        " (n_positions / max_position_embeddings = " +
                        std::to_string(cfg.max_position_embeddings) + "); appending " +
                        std::to_string(n) + " tokens after " + std::to_string(pos0) +
                        " would need position " + std::to_string(pos0 + n - 1));

  const std::size_t V = cfg.vocab_size, half = cfg.head_dim / 2;
  out.resize(n, V);
  HostStaging& hs = host_staging();
  std::vector<Binding>& bind = hs.bind;
  bind.assign(weight_bindings.begin(), weight_bindings.end());
  const std::size_t fixed = bind.size();
  // Rule for requests beyond the largest token bucket: chunks of that bucket,
  // each a causal continuation of the previous one, so no new shape compiles.
  for (std::size_t done = 0; done < n;) {
    const std::size_t c = std::min(n - done, buckets.max_tokens());
    const std::size_t pos = pos0 + done;
    const BucketChoice choice = buckets.pick(1, c, pos + c);
    const Bucket& b = choice.bucket;
    const auto rec = recipe(b);

    hs.ids.assign(b.batch * b.tokens, 0);
    std::copy_n(tokens.begin() + static_cast<std::ptrdiff_t>(done), c, hs.ids.begin());
    if (learned) {  // position ids; padded slots read row 0 (their logits are discarded)
      hs.positions.assign(b.batch * b.tokens, 0);
      for (std::size_t i = 0; i < c; ++i) hs.positions[i] = static_cast<std::int32_t>(pos + i);
      cache.cos_.upload(hs.positions.data(), hs.positions.size() * sizeof(std::int32_t));
    } else {
      hs.cs.assign(b.tokens * half, 1.0f);  // padded rows: the identity rotation
      hs.sn.assign(b.tokens * half, 0.0f);
      for (std::size_t i = 0; i < c; ++i)
        rope_cos_sin(inv_freq, pos + i, &hs.cs[i * half], &hs.sn[i * half]);
      cache.cos_.upload(hs.cs.data(), hs.cs.size() * sizeof(float));
      cache.sin_.upload(hs.sn.data(), hs.sn.size() * sizeof(float));
    }
    StaticKvCache::write_index(pos, c, b.tokens, layout.max_len, hs.index);
    if (spec.has_full_mask()) {
      StaticKvCache::attention_mask(pos, c, b.batch, 1, b.tokens, b.kv_len, 0, hs.mask);
      cache.mask_.upload(hs.mask.data(), hs.mask.size() * sizeof(float));
    }
    if (spec.has_window_mask()) {
      StaticKvCache::attention_mask(pos, c, b.batch, 1, b.tokens, b.kv_len, spec.window, hs.window_mask);
      cache.window_mask_.upload(hs.window_mask.data(), hs.window_mask.size() * sizeof(float));
    }
    cache.ids_.upload(hs.ids.data(), hs.ids.size() * sizeof(std::int32_t));
    cache.index_.upload(hs.index.data(), hs.index.size() * sizeof(std::int32_t));
    if (rec->workspace_bytes() > cache.workspace_.bytes())
      cache.workspace_ = DeviceBuffer(device, rec->workspace_bytes());

    bind.resize(fixed);
    bind.push_back({"ids", cache.ids_.address()});
    bind.push_back({"write_index", cache.index_.address()});
    if (learned) {
      bind.push_back({"positions", cache.cos_.address()});
    } else {
      bind.push_back({"cos", cache.cos_.address()});
      bind.push_back({"sin", cache.sin_.address()});
    }
    if (spec.has_full_mask()) bind.push_back({"mask", cache.mask_.address()});
    bind.push_back({"logits", cache.logits_.address()});
    if (spec.has_window_mask()) bind.push_back({"window_mask", cache.window_mask_.address()});
    for (std::size_t l = 0; l < layout.layers; ++l) {
      bind.push_back({kv_names[2 * l], kv.key_address(l)});
      bind.push_back({kv_names[2 * l + 1], kv.value_address(l)});
    }
    device->launch(*rec, bind, cache.workspace_.address());
    device->synchronize();
    // Batch row 0, the first c token rows: contiguous at the start of logits.
    cache.logits_.download(out.row(done).data(), c * V * sizeof(float));
    ++cache.stats_.launches;
    cache.stats_.tokens += c;
    cache.stats_.padded_tokens += choice.padded_tokens;
    done += c;
  }
  // The weights are finite (checked at load); overflowing activations are an
  // error naming the model and position, and the cache keeps its length.
  const float* lg = out.data();
  for (std::size_t e = 0; e < n * V; ++e)
    if (!std::isfinite(lg[e]))
      throw FormatError("hpu::Transformer '" + name + "': the logits at position " +
                        std::to_string(kv.size() + e / V) + " are not finite (token id " +
                        std::to_string(e % V) + " is " + (std::isnan(lg[e]) ? "NaN" : "infinite") +
                        "): the weights overflow float arithmetic");
  kv.commit(n);
}

}  // namespace assistgen::hpu

// hpu::Transformer: loads an HF checkpoint onto a Device and runs each
// forward pass as one launch (per chunk) of the bucket's compiled graph.
// Host work per launch is only the small inputs: ids, write index, RoPE
// cos/sin for the positions, and the mask; everything else stays on the device.
#include "assistgen/hpu/transformer.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numbers>
#include <optional>
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
  return kv_.bytes() + ids_.bytes() + index_.bytes() + pad_index_.bytes() + cos_.bytes() +
         sin_.bytes() + mask_.bytes() + window_mask_.bytes() + logits_.bytes() + workspace_.bytes();
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
  std::vector<std::string>
      kv_names;  // "l<i>.k_cache", "l<i>.v_cache" per layer, bound every launch
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
      throw UnsupportedError(
          "hpu::Transformer: " + cfg.architecture +
          " is not supported; the HPU graph covers RMSNorm + RoPE + gated SiLU "
          "(Llama, Mistral, Qwen2) and LayerNorm + learned positions + gelu_tanh "
          "(GPT-2)");
    if (cfg.positions == PositionKind::rope && cfg.head_dim % 2 != 0)
      throw ConfigError("hpu::Transformer: head_dim " + std::to_string(cfg.head_dim) +
                        " must be even for RoPE");
    // One sequence per cache: a batched launch binds each row's own cache.
    layout = {cfg.num_hidden_layers, 1, cfg.num_key_value_heads, buckets.max_kv_len(),
              cfg.head_dim};
    spec = detail::DecoderSpec::from(cfg, layout.slots(), opts.dtype, opts.fp8_per_channel);
    if (cfg.positions == PositionKind::rope) inv_freq = rope_inverse_frequencies(cfg);
    for (std::size_t l = 0; l < cfg.num_hidden_layers; ++l) {
      kv_names.push_back(detail::layer_name(l, "k_cache"));
      kv_names.push_back(detail::layer_name(l, "v_cache"));
    }
    for (std::size_t j = 0; j < buckets.max_batch(); ++j) {
      const std::string suffix = ".b" + std::to_string(j);
      RowNames rn{"write_index" + suffix, {}};
      for (const auto& kvn : kv_names) rn.kv.push_back(kvn + suffix);
      rows.push_back(std::move(rn));
    }
    for (const Bucket& b : buckets.all()) keys.push_back(key(b));
    const std::size_t n_buckets = keys.size();
    const std::size_t capacity = opts.graph_cache_capacity ? opts.graph_cache_capacity : n_buckets;
    GraphCache::CompileFn compile = opts.compile;
    if (!compile) compile = [dev = device](const Graph& g) { return dev->compile(g); };
    graphs = std::make_unique<GraphCache>(capacity, std::move(compile));
  }

  void forward(std::span<const Token> tokens, TransformerCache& cache, Logits& out) const;
  void forward(std::span<const ForwardRequest> requests, std::span<TransformerCache* const> caches,
               Logits& out, const LayerPlan& plan) const;

  // Binding names of batch row j in graphs of batch > 1, made at load.
  struct RowNames {
    std::string index;            // "write_index.b<j>"
    std::vector<std::string> kv;  // "l<i>.k_cache.b<j>", "l<i>.v_cache.b<j>" per layer
  };
  std::vector<RowNames> rows;
  const RowNames& row_names(std::size_t j) const { return rows[j]; }

  // Launch counters of every forward call (LaunchStats).
  struct Counters {
    std::atomic<std::size_t> launches{0}, batched_launches{0}, batch_rows{0}, padded_rows{0},
        token_slots{0}, padded_tokens{0};
  };
  mutable Counters counters;
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
    const std::size_t cap = (config.max_position_embeddings + kv.step - 1) / kv.step * kv.step;
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
  const std::size_t Hs = c.hidden_size, Fs = c.intermediate_size,
                    qds = c.num_attention_heads * c.head_dim,
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
    if (std::any_of(w.ignored_suffixes.begin(), w.ignored_suffixes.end(),
                    [&](const std::string& suffix) {
                      return name.size() >= suffix.size() &&
                             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
                    }))
      continue;
    throw FormatError(ck.dir().string() + ": unexpected tensor '" + name + "' for " +
                      c.architecture + " with this config");
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
    throw CapacityError(
        "hpu::Transformer::make_cache: " + std::to_string(capacity) +
        " positions exceed the model's max_position_embeddings (" +
        std::to_string(impl_->cfg.max_position_embeddings) +
        ", config.json), which bounds the kv_len buckets (LoadOptions::bound_by_model)");
  Cache c;
  c.kv_ = StaticKvCache(impl_->device, L, capacity);
  const std::size_t B = bk.max_batch(), T = bk.max_tokens(), half = impl_->cfg.head_dim / 2;
  auto& dev = impl_->device;
  c.ids_ = DeviceBuffer(dev, B * T * sizeof(std::int32_t));
  c.index_ = DeviceBuffer(dev, T * sizeof(std::int32_t));
  // RoPE: cos and sin [B, T, half]; learned positions: the ids [B, T] in cos_.
  c.cos_ = DeviceBuffer(dev, std::max(B * T * half * sizeof(float), B * T * sizeof(std::int32_t)));
  if (!impl_->spec.learned_positions) c.sin_ = DeviceBuffer(dev, B * T * half * sizeof(float));
  if (B > 1) c.pad_index_ = DeviceBuffer(dev, T * sizeof(std::int32_t));
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

void Transformer::forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches,
                          Logits& out, const LayerPlan& plan) const {
  impl_->forward(requests, caches, out, plan);
}

LaunchStats Transformer::launch_stats() const {
  const auto& c = impl_->counters;
  return {c.launches.load(),    c.batched_launches.load(), c.batch_rows.load(),
          c.padded_rows.load(), c.token_slots.load(),      c.padded_tokens.load()};
}

namespace {

// Host-side staging of one forward call, per thread and reused (as the CPU
// backend's workspace), so a decoding loop that keeps its Logits allocates
// no host memory per step once warm.
struct HostStaging {
  std::vector<Binding> bind;
  std::vector<std::int32_t> ids, index, positions;
  std::vector<float> cs, sn, mask, window_mask, one_mask;
  std::vector<std::size_t> out_base, done, rows;
};

HostStaging& host_staging() {
  thread_local HostStaging staging;
  return staging;
}

}  // namespace

void Transformer::Impl::forward(std::span<const Token> tokens, TransformerCache& cache,
                                Logits& out) const {
  if (tokens.empty()) throw InvalidArgument("hpu::Transformer::forward: no tokens to append");
  const ForwardRequest request{tokens};
  TransformerCache* const c = &cache;
  forward({&request, 1}, {&c, 1}, out, LayerPlan{});
}

void Transformer::Impl::forward(std::span<const ForwardRequest> requests,
                                std::span<TransformerCache* const> caches, Logits& out,
                                const LayerPlan& plan) const {
  constexpr const char* kWho = "hpu::Transformer::forward";
  assistgen::detail::check_requests<TransformerCache>(kWho, requests, caches);
  if (requests.empty()) throw InvalidArgument(std::string(kWho) + ": no requests");
  if (!plan.runs_all())
    throw UnsupportedError(std::string(kWho) +
                           ": the HPU graphs run every layer (no LayerPlan: the graph of a bucket "
                           "is fixed when it is compiled)");
  const bool learned = spec.learned_positions;
  std::size_t n_out = 0;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const ForwardRequest& q = requests[r];
    if (!assistgen::detail::is_chain(q))
      throw UnsupportedError(std::string(kWho) + ": request " + std::to_string(r) +
                             " is a tree; the HPU graphs have no tree masks yet");
    assistgen::detail::check_token_ids(
        q.tokens, cfg.vocab_size,
        requests.size() > 1 ? std::optional<std::size_t>(r) : std::nullopt);
    TransformerCache& cache = *caches[r];
    StaticKvCache& kv = cache.kv_;
    const KvLayout& cl = kv.layout();
    if (cl.layers != layout.layers || cl.kv_heads != layout.kv_heads ||
        cl.head_dim != layout.head_dim || cl.max_len != layout.max_len || cl.batch != 1 ||
        !cache.logits_ ||
        cache.logits_.bytes() <
            buckets.max_batch() * buckets.max_tokens() * cfg.vocab_size * sizeof(float))
      throw InvalidArgument(std::string(kWho) + ": the cache was made by a model of another shape");
    const std::size_t n = q.tokens.size(), pos0 = kv.size();
    kv.check_append(n);
    if (learned && pos0 + n > cfg.max_position_embeddings)
      throw CapacityError(std::string(kWho) + ": " + cfg.architecture +
                          " has learned positions 0.." +
                          std::to_string(cfg.max_position_embeddings - 1) +
                          " (n_positions / max_position_embeddings = " +
                          std::to_string(cfg.max_position_embeddings) + "); appending " +
                          std::to_string(n) + " tokens after " + std::to_string(pos0) +
                          " would need position " + std::to_string(pos0 + n - 1));
    n_out += output_rows(q);
  }

  const std::size_t V = cfg.vocab_size, half = cfg.head_dim / 2;
  out.resize(n_out, V);
  HostStaging& hs = host_staging();
  std::vector<Binding>& bind = hs.bind;
  bind.assign(weight_bindings.begin(), weight_bindings.end());
  const std::size_t fixed = bind.size();
  // Output row of request r's first output token.
  hs.out_base.assign(requests.size(), 0);
  for (std::size_t r = 1; r < requests.size(); ++r)
    hs.out_base[r] = hs.out_base[r - 1] + output_rows(requests[r - 1]);
  hs.done.assign(requests.size(), 0);

  // Launches: groups of up to the largest batch bucket, in request order;
  // within a group, each launch takes from every row that has tokens left a
  // chunk of at most the largest token bucket (a causal continuation of its
  // previous chunk), so no shape outside the buckets ever compiles. The
  // caches commit only after every launch succeeded.
  for (std::size_t g0 = 0; g0 < requests.size(); g0 += buckets.max_batch()) {
    const std::size_t g1 = std::min(requests.size(), g0 + buckets.max_batch());
    for (;;) {
      hs.rows.clear();
      std::size_t T = 0, kv_need = 0;
      for (std::size_t r = g0; r < g1; ++r) {
        const std::size_t left = requests[r].tokens.size() - hs.done[r];
        if (left == 0) continue;
        const std::size_t c = std::min(left, buckets.max_tokens());
        hs.rows.push_back(r);
        T = std::max(T, c);
        kv_need = std::max(kv_need, caches[r]->kv_.size() + hs.done[r] + c);
      }
      if (hs.rows.empty()) break;
      const std::size_t active = hs.rows.size();
      const BucketChoice choice = buckets.pick(active, T, kv_need);
      const Bucket& b = choice.bucket;
      const auto rec = recipe(b);
      TransformerCache& lead = *caches[hs.rows[0]];  // its launch buffers serve the group

      hs.ids.assign(b.batch * b.tokens, 0);
      if (learned) hs.positions.assign(b.batch * b.tokens, 0);  // padding reads row 0
      const std::size_t cs_rows = b.batch == 1 ? b.tokens : b.batch * b.tokens;
      hs.cs.assign(cs_rows * half, 1.0f);  // padded rows: the identity rotation
      hs.sn.assign(cs_rows * half, 0.0f);
      hs.mask.assign(b.batch * b.tokens * b.kv_len, 0.0f);
      hs.window_mask.assign(spec.has_window_mask() ? hs.mask.size() : 0, 0.0f);
      bind.resize(fixed);
      for (std::size_t j = 0; j < b.batch; ++j) {
        // Padded batch rows (j >= active) run with no real token: they write
        // only the padding slot of the first row's cache, which no query reads.
        const bool real = j < active;
        const std::size_t r = real ? hs.rows[j] : hs.rows[0];
        TransformerCache& cache = *caches[r];
        const std::size_t pos = cache.kv_.size() + hs.done[r];
        const std::size_t c =
            real ? std::min(requests[r].tokens.size() - hs.done[r], buckets.max_tokens()) : 0;
        for (std::size_t i = 0; i < c; ++i) {
          hs.ids[j * b.tokens + i] = requests[r].tokens[hs.done[r] + i];
          if (learned)
            hs.positions[j * b.tokens + i] = static_cast<std::int32_t>(pos + i);
          else
            rope_cos_sin(inv_freq, pos + i, &hs.cs[(j * b.tokens + i) * half],
                         &hs.sn[(j * b.tokens + i) * half]);
        }
        auto row_mask = [&](std::size_t window, std::vector<float>& dst) {
          StaticKvCache::attention_mask(pos, c, 1, 1, b.tokens, b.kv_len, window, hs.one_mask);
          std::copy(hs.one_mask.begin(), hs.one_mask.end(),
                    dst.begin() + static_cast<std::ptrdiff_t>(j * b.tokens * b.kv_len));
        };
        if (spec.has_full_mask()) row_mask(0, hs.mask);
        if (spec.has_window_mask()) row_mask(spec.window, hs.window_mask);
        StaticKvCache::write_index(pos, c, b.tokens, layout.max_len, hs.index);
        if (real) cache.index_.upload(hs.index.data(), hs.index.size() * sizeof(std::int32_t));
        const std::string& wi = b.batch == 1 ? std::string("write_index") : row_names(j).index;
        bind.push_back({wi, (real ? cache : lead).index_.address()});
        for (std::size_t l = 0; l < layout.layers; ++l) {
          bind.push_back(
              {b.batch == 1 ? kv_names[2 * l] : row_names(j).kv[2 * l], cache.kv_.key_address(l)});
          bind.push_back({b.batch == 1 ? kv_names[2 * l + 1] : row_names(j).kv[2 * l + 1],
                          cache.kv_.value_address(l)});
        }
      }
      if (active < b.batch) {
        // The first row's index buffer holds its real indices; padded rows
        // need all-padding ones: upload them after the real ones, once.
        StaticKvCache::write_index(0, 0, b.tokens, layout.max_len, hs.index);
        lead.pad_index_.upload(hs.index.data(), hs.index.size() * sizeof(std::int32_t));
        for (auto& e : bind)
          if (e.name.rfind("write_index.b", 0) == 0 && std::stoul(e.name.substr(13)) >= active)
            e.address = lead.pad_index_.address();
      }
      lead.ids_.upload(hs.ids.data(), hs.ids.size() * sizeof(std::int32_t));
      if (learned) {
        lead.cos_.upload(hs.positions.data(), hs.positions.size() * sizeof(std::int32_t));
        bind.push_back({"positions", lead.cos_.address()});
      } else {
        lead.cos_.upload(hs.cs.data(), hs.cs.size() * sizeof(float));
        lead.sin_.upload(hs.sn.data(), hs.sn.size() * sizeof(float));
        bind.push_back({"cos", lead.cos_.address()});
        bind.push_back({"sin", lead.sin_.address()});
      }
      if (spec.has_full_mask()) {
        lead.mask_.upload(hs.mask.data(), hs.mask.size() * sizeof(float));
        bind.push_back({"mask", lead.mask_.address()});
      }
      if (spec.has_window_mask()) {
        lead.window_mask_.upload(hs.window_mask.data(), hs.window_mask.size() * sizeof(float));
        bind.push_back({"window_mask", lead.window_mask_.address()});
      }
      bind.push_back({"ids", lead.ids_.address()});
      bind.push_back({"logits", lead.logits_.address()});
      if (rec->workspace_bytes() > lead.workspace_.bytes())
        lead.workspace_ = DeviceBuffer(device, rec->workspace_bytes());
      device->launch(*rec, bind, lead.workspace_.address());
      device->synchronize();
      ++counters.launches;
      counters.batch_rows += b.batch;
      counters.padded_rows += b.batch - active;
      counters.token_slots += b.batch * b.tokens;
      counters.padded_tokens += choice.padded_tokens;
      if (active > 1) ++counters.batched_launches;
      // Row j's logits are rows [j * T, j * T + c) of the bucket's
      // [B, T, V]; keep those of each request's output rows.
      for (std::size_t j = 0; j < active; ++j) {
        const std::size_t r = hs.rows[j];
        const std::size_t n = requests[r].tokens.size(), first_out = n - output_rows(requests[r]);
        const std::size_t c = std::min(n - hs.done[r], buckets.max_tokens());
        for (std::size_t i = 0; i < c; ++i) {
          const std::size_t t = hs.done[r] + i;
          if (t < first_out) continue;
          lead.logits_.download(out.row(hs.out_base[r] + t - first_out).data(), V * sizeof(float),
                                (j * b.tokens + i) * V * sizeof(float));
        }
        TransformerCache& cache = *caches[r];
        ++cache.stats_.launches;
        cache.stats_.tokens += c;
        if (j == 0) cache.stats_.padded_tokens += choice.padded_tokens;
        hs.done[r] += c;
      }
    }
  }
  // The weights are finite (checked at load); overflowing activations are an
  // error naming the model and position, and every cache keeps its length.
  const float* lg = out.data();
  for (std::size_t e = 0; e < n_out * V; ++e)
    if (!std::isfinite(lg[e])) {
      std::size_t r = 0;
      while (r + 1 < requests.size() && hs.out_base[r + 1] <= e / V) ++r;
      const std::size_t pos = caches[r]->kv_.size() + requests[r].tokens.size() -
                              output_rows(requests[r]) + (e / V - hs.out_base[r]);
      throw FormatError(
          "hpu::Transformer '" + name + "': the logits at position " + std::to_string(pos) +
          (requests.size() > 1 ? " of request " + std::to_string(r) : std::string()) +
          " are not finite (token id " + std::to_string(e % V) + " is " +
          (std::isnan(lg[e]) ? "NaN" : "infinite") + "): the weights overflow float arithmetic");
    }
  for (std::size_t r = 0; r < requests.size(); ++r)
    caches[r]->kv_.commit(requests[r].tokens.size());
}

}  // namespace assistgen::hpu

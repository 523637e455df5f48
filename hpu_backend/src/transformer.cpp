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
    return {spec.kind(), DType::f32, b.batch, b.tokens, b.kv_len};
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

  void upload(const std::string& name, const std::vector<float>& data) {
    DeviceBuffer buf(device, data.size() * sizeof(float));
    buf.upload(data.data(), buf.bytes());
    weight_bindings.push_back({name, buf.address()});
    weights.emplace_back(name, std::move(buf));
  }

  void finish_setup() {
    if (opts.dtype != DType::f32)
      throw UnsupportedError("hpu::Transformer: compute dtype '" +
                             std::string(dtype_name(opts.dtype)) +
                             "' is not built yet; weights are converted to f32 at load (use f32)");
    // The graph is the Llama family's: RMSNorm, RoPE, a gated SiLU MLP.
    if (cfg.norm != NormKind::rms_norm || cfg.positions != PositionKind::rope || !cfg.gated_mlp ||
        cfg.activation != Activation::silu)
      throw UnsupportedError("hpu::Transformer: " + cfg.architecture +
                             " is not supported; the HPU graph covers Llama-family decoders "
                             "(RMSNorm, RoPE, gated SiLU MLP: Llama, Mistral, Qwen2)");
    if (cfg.head_dim % 2 != 0)
      throw ConfigError("hpu::Transformer: head_dim " + std::to_string(cfg.head_dim) +
                        " must be even for RoPE");
    layout = {cfg.num_hidden_layers, buckets.max_batch(), cfg.num_key_value_heads,
              buckets.max_kv_len(), cfg.head_dim};
    spec = detail::DecoderSpec::from(cfg, layout.slots());
    inv_freq = rope_inverse_frequencies(cfg);
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
  const I H = static_cast<I>(c.hidden_size), F = static_cast<I>(c.intermediate_size),
          V = static_cast<I>(c.vocab_size);
  const I qd = static_cast<I>(c.num_attention_heads * c.head_dim);
  const I kvd = static_cast<I>(c.num_key_value_heads * c.head_dim);

  std::vector<std::string> expected;
  auto read = [&](const std::string& name, std::vector<I> shape) {
    expected.push_back(name);
    const io::TensorView& t = ck.tensor(name);
    if (t.shape != shape)
      throw FormatError(ck.dir().string() + ": tensor '" + name + "' has shape " +
                        shape_str(t.shape) + " but the config implies " + shape_str(shape));
    return t.to_finite_float();
  };
  // 1/sqrt(head_dim) folded into the query projection: RoPE is linear, so
  // scaling q before it equals scaling the scores after the q.k product.
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  auto scaled = [&](std::vector<float> v) {
    for (auto& e : v) e *= q_scale;
    return v;
  };

  // Tensor names from the architecture registry, as the CPU backend reads
  // them; the graph wants q, k, v and gate, up as separate weights, so each
  // part of a fused weight is uploaded on its own.
  const CheckpointLayout w =
      architecture_of(c).layout(c, [&](const std::string& name) { return ck.contains(name); });
  auto part = [&](const WeightSource& src, std::size_t i, const char* what) -> const std::string& {
    if (src.parts.size() <= i)
      throw UnsupportedError("hpu::Transformer: " + c.architecture + " stores " + what +
                             " in a layout the HPU graph does not take (separate q/k/v and gate/up tensors)");
    return src.parts[i].name;
  };
  impl->upload("embed", read(part(w.embed, 0, "the embedding"), {V, H}));
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeightSources& L = w.layers.at(l);
    auto nm = [&](const char* what) { return detail::layer_name(l, what); };
    impl->upload(nm("attn_norm"), read(part(L.attn_norm, 0, "attn_norm"), {H}));
    impl->upload(nm("mlp_norm"), read(part(L.mlp_norm, 0, "mlp_norm"), {H}));
    impl->upload(nm("q.w"), scaled(read(part(L.qkv, 0, "q"), {qd, H})));
    impl->upload(nm("k.w"), read(part(L.qkv, 1, "k"), {kvd, H}));
    impl->upload(nm("v.w"), read(part(L.qkv, 2, "v"), {kvd, H}));
    if (L.qkv_bias.present()) {
      impl->upload(nm("q.b"), scaled(read(part(L.qkv_bias, 0, "q bias"), {qd})));
      impl->upload(nm("k.b"), read(part(L.qkv_bias, 1, "k bias"), {kvd}));
      impl->upload(nm("v.b"), read(part(L.qkv_bias, 2, "v bias"), {kvd}));
    }
    impl->upload(nm("o.w"), read(part(L.o, 0, "o"), {H, qd}));
    if (L.o_bias.present()) impl->upload(nm("o.b"), read(part(L.o_bias, 0, "o bias"), {H}));
    impl->upload(nm("gate.w"), read(part(L.mlp_in, 0, "gate"), {F, H}));
    impl->upload(nm("up.w"), read(part(L.mlp_in, 1, "up"), {F, H}));
    impl->upload(nm("down.w"), read(part(L.mlp_out, 0, "down"), {H, F}));
    if (L.mlp_in_bias.present()) {
      impl->upload(nm("gate.b"), read(part(L.mlp_in_bias, 0, "gate bias"), {F}));
      impl->upload(nm("up.b"), read(part(L.mlp_in_bias, 1, "up bias"), {F}));
      impl->upload(nm("down.b"), read(part(L.mlp_out_bias, 0, "down bias"), {H}));
    }
  }
  impl->upload("final_norm", read(part(w.final_norm, 0, "the final norm"), {H}));
  // Tied: the graph's lm_head gemm reads "embed" directly (a stored copy is
  // in w.ignored, as HF ignores it).
  if (w.lm_head.present()) impl->upload("lm_head", read(part(w.lm_head, 0, "lm_head"), {V, H}));
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
  c.cos_ = DeviceBuffer(dev, T * half * sizeof(float));
  c.sin_ = DeviceBuffer(dev, T * half * sizeof(float));
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
  std::vector<std::int32_t> ids, index;
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
    hs.cs.assign(b.tokens * half, 1.0f);  // padded rows: the identity rotation
    hs.sn.assign(b.tokens * half, 0.0f);
    for (std::size_t i = 0; i < c; ++i) rope_cos_sin(inv_freq, pos + i, &hs.cs[i * half], &hs.sn[i * half]);
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
    cache.cos_.upload(hs.cs.data(), hs.cs.size() * sizeof(float));
    cache.sin_.upload(hs.sn.data(), hs.sn.size() * sizeof(float));
    if (rec->workspace_bytes() > cache.workspace_.bytes())
      cache.workspace_ = DeviceBuffer(device, rec->workspace_bytes());

    bind.resize(fixed);
    bind.push_back({"ids", cache.ids_.address()});
    bind.push_back({"write_index", cache.index_.address()});
    bind.push_back({"cos", cache.cos_.address()});
    bind.push_back({"sin", cache.sin_.address()});
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

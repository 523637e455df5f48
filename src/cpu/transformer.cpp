// cpu::Transformer: loading a checkpoint (or making random weights) into the
// packed layouts of the batch-invariant kernels. The forward pass is in
// transformer_forward.cpp; what both share is in transformer_impl.hpp.
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
#include "kernels_q4.hpp"
#include "parallel.hpp"
#include "transformer_impl.hpp"

namespace assistgen::cpu {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

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

}  // namespace

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
// `keep` (tensor parallel): only those rows of the stacked parts, in order;
// plain row-major tensors convert just the bytes of those rows, others
// (transposed, decoded) convert the part and copy the rows. Empty: all rows.
std::vector<float> read(const io::Checkpoint& ck, const WeightSource& src, std::size_t cols,
                        std::vector<std::string>& used, std::span<const Share> keep = {}) {
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
  const std::size_t width = std::max<std::size_t>(cols, 1);
  if (!keep.empty()) {
    std::vector<float> out;
    out.reserve(detail::kept_rows(keep) * width);
    for (const Share& want : keep) {
      std::size_t base = 0;
      for (const TensorPart& part : src.parts) {
        const std::size_t lo = std::max(want.begin, base),
                          hi = std::min(want.end, base + part.rows);
        if (lo < hi) {
          const io::TensorView& t = ck.tensor(part.name);
          if (!t.decode && (!src.transposed || cols == 0)) {
            io::TensorView rows = t;
            const std::size_t row_bytes = width * dtype_size(t.dtype);
            rows.shape = cols == 0 ? std::vector<std::int64_t>{static_cast<std::int64_t>(hi - lo)}
                                   : std::vector<std::int64_t>{static_cast<std::int64_t>(hi - lo),
                                                               static_cast<std::int64_t>(cols)};
            rows.data = t.data.subspan((lo - base) * row_bytes, (hi - lo) * row_bytes);
            const std::vector<float> v = rows.to_finite_float();
            out.insert(out.end(), v.begin(), v.end());
          } else {
            std::vector<std::string> again;
            const std::vector<float> v = read(ck, {{part}, src.transposed}, cols, again);
            out.insert(out.end(), v.begin() + static_cast<std::ptrdiff_t>((lo - base) * width),
                       v.begin() + static_cast<std::ptrdiff_t>((hi - base) * width));
          }
        }
        base += part.rows;
      }
    }
    for (const TensorPart& part : src.parts) used.push_back(part.name);
    return out;
  }
  std::vector<float> out;
  out.reserve(src.rows() * width);
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
  // Stored group-quantized weights (GGUF's 4- and 6-bit types) keep their
  // codes, scales and mins at an unset dtype and at i4 (load_grouped.cpp).
  const bool keep_groups = !options.dtype || *options.dtype == DType::i4;
  bool kept_groups = false;
  // `keep`: the rows of this rank's share (tensor parallel), empty for all.
  auto linear = [&](const WeightSource& w, const WeightSource& b, std::size_t k,
                    std::span<const Share> keep = {}) {
    std::optional<io::GroupQuantized> groups =
        keep_groups ? detail::read_grouped(ck, w, k, used) : std::nullopt;
    // Only this rank's rows are converted (tensor parallel).
    const std::vector<float> weight = groups ? std::vector<float>{} : read(ck, w, k, used, keep);
    std::vector<float> bias;
    if (b.present()) {
      if (b.rows() != w.rows())
        throw ConfigError(c.architecture + ": bias '" + b.parts.front().name +
                          "' does not match its weight");
      bias = read(ck, b, 0, used, keep);
    }
    const std::size_t n = keep.empty() ? w.rows() : detail::kept_rows(keep);
    if (groups) {
      kept_groups = true;
      detail::keep_rows(*groups, keep);
      return detail::pack_grouped(*groups, bias.empty() ? nullptr : bias.data());
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

  const detail::RowShares shares(impl->shard);
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
    L.qkv = linear(src.qkv, src.qkv_bias, c.hidden_size, shares.qkv);
    L.o = linear(src.o, src.o_bias, impl->q_dim, shares.hidden);
    L.mlp_norm = norm(src.mlp_norm, src.mlp_norm_bias);
    L.mlp_in = linear(src.mlp_in, src.mlp_in_bias, c.hidden_size, shares.mlp_in);
    L.mlp_out = linear(src.mlp_out, src.mlp_out_bias, c.intermediate_size, shares.hidden);
    if (src.qkv.rows() != impl->q_dim + 2 * impl->kv_dim || src.o.rows() != c.hidden_size ||
        src.mlp_in.rows() != impl->mlp_in_dim || src.mlp_out.rows() != c.hidden_size)
      throw ConfigError(c.architecture +
                        ": the registry's layout disagrees with the config's layer shapes");
    impl->layers.push_back(std::move(L));
    report();
  }
  impl->final_norm = norm(layout.final_norm, layout.final_norm_bias);
  if (layout.lm_head.present()) {
    impl->lm_head = linear(layout.lm_head, {}, c.hidden_size, shares.vocab);
  } else {  // tied
    std::vector<std::string> again;  // the embedding is already counted as used
    std::optional<io::GroupQuantized> groups =
        keep_groups ? detail::read_grouped(ck, layout.embed, c.hidden_size, again) : std::nullopt;
    if (groups) {
      kept_groups = true;
      detail::keep_rows(*groups, shares.vocab);
      impl->lm_head = detail::pack_grouped(*groups, nullptr);
    } else {
      impl->lm_head = impl->pack_rows(impl->embed, c.hidden_size, shares.vocab, nullptr);
    }
  }
  if (kept_groups) impl->dtype = DType::i4;

  report();
  if (options.on_progress) {
    progress.tensors_done = progress.tensors_total;
    progress.bytes_done = progress.bytes_total;
    options.on_progress(progress);
  }

  impl->check_same_on_every_rank();
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
  const detail::RowShares shares(impl->shard);
  // Every rank draws the whole tensor (the same values as one rank) and keeps its rows.
  auto linear = [&](std::size_t n, std::size_t k, bool bias, std::span<const Share> keep) {
    std::vector<float> w = randv(n * k, 0.02f);
    std::vector<float> b = bias ? randv(n, 0.02f) : std::vector<float>{};
    detail::keep_rows(b, 1, keep);
    return impl->pack_rows(w, k, keep, bias ? b.data() : nullptr);
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
    L.qkv = linear(impl->q_dim + 2 * impl->kv_dim, c.hidden_size, c.attention_bias, shares.qkv);
    L.o = linear(c.hidden_size, impl->q_dim, c.o_proj_bias, shares.hidden);
    L.mlp_in = linear(impl->mlp_in_dim, c.hidden_size, c.mlp_bias, shares.mlp_in);
    L.mlp_out = linear(c.hidden_size, c.intermediate_size, c.mlp_bias, shares.hidden);
    impl->layers.push_back(std::move(L));
  }
  impl->final_norm = unit_norm();
  if (c.tie_word_embeddings) {
    impl->lm_head = impl->pack_rows(impl->embed, c.hidden_size, shares.vocab, nullptr);
  } else {
    impl->lm_head = linear(c.vocab_size, c.hidden_size, false, shares.vocab);
  }
  impl->check_same_on_every_rank();
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
  // Tensor parallel: only the key/value heads of this rank's share.
  return Cache(KvStorage(c.num_hidden_layers, impl_->kv_heads.size(), c.head_dim, capacity));
}

}  // namespace assistgen::cpu

// The decoder forward pass as an IR graph. Per layer: RMSNorm (LayerNorm
// for GPT-2) -> q/k/v gemms -> RoPE (none with learned positions, which are
// added to the embeddings) -> K/V written in place at their positions -> a static kv_len
// prefix read back -> grouped-query attention as two batch_gemms over
// [B * kv_heads, group * T, .] (GQA without repeating K/V: the query heads of
// one kv head are contiguous) with the additive mask broadcast over heads ->
// o gemm -> residual -> norm -> SwiGLU (or gelu_tanh) MLP -> residual. With
// bf16 or fp8 weights every gemm of a weight takes its activations cast to
// bf16 (the MME's operands) and accumulates in f32; attention stays f32.
#include "decoder_graph.hpp"

#include <cstdint>
#include <vector>

namespace assistgen::hpu::detail {

DecoderSpec DecoderSpec::from(const ModelConfig& c, std::size_t slots, DType weights,
                              bool per_channel) {
  DecoderSpec s;
  s.layer_norm = c.norm == NormKind::layer_norm;
  s.learned_positions = c.positions == PositionKind::learned;
  s.gated = c.gated_mlp;
  s.positions = c.max_position_embeddings;
  s.weights = weights;
  s.per_channel = per_channel;
  s.layers = c.num_hidden_layers;
  s.hidden = c.hidden_size;
  s.intermediate = c.intermediate_size;
  s.vocab = c.vocab_size;
  s.heads = c.num_attention_heads;
  s.kv_heads = c.num_key_value_heads;
  s.head_dim = c.head_dim;
  s.eps = static_cast<float>(c.norm_eps);
  s.qkv_bias = c.attention_bias;
  s.o_bias = c.o_proj_bias;
  s.mlp_bias = c.mlp_bias;
  s.tied = c.tie_word_embeddings;
  s.slots = slots;
  s.window = c.sliding_window;
  bool any = false;
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    s.windowed.push_back(c.window_of_layer(l) != 0);
    any = any || s.windowed.back();
  }
  if (!any) s.windowed.clear();
  return s;
}

std::string DecoderSpec::window_str() const {
  if (windowed.empty()) return "";
  std::string r = "/w" + std::to_string(window) + ":";
  for (bool w : windowed) r += w ? '1' : '0';
  return r;
}

std::string DecoderSpec::kind() const {
  // Appends rather than operator+ chains: GCC 12 raises a false -Wrestrict on those.
  std::string r = "decoder-";
  r += layer_norm ? "ln" : "rms";
  r += learned_positions ? "-pos" + std::to_string(positions) : std::string("-rope");
  r += gated ? "-swiglu" : "-gelu";
  if (weights != DType::f32) {
    r += '-';
    r += dtype_name(weights);
  }
  if (weights == DType::f8_e4m3) r += per_channel ? "-pc" : "-pt";
  for (const auto& [tag, v] : {std::pair{"/L", layers},
                               {"/H", hidden},
                               {"/I", intermediate},
                               {"/V", vocab},
                               {"/h", heads},
                               {"/kv", kv_heads},
                               {"/d", head_dim},
                               {"/s", slots}}) {
    r += tag;
    r += std::to_string(v);
  }
  if (qkv_bias) r += "/qkvb";
  if (o_bias) r += "/ob";
  if (mlp_bias) r += "/mb";
  if (tied) r += "/tied";
  r += window_str();
  return r;
}

Graph build_decoder_graph(const DecoderSpec& s, std::size_t batch, std::size_t tokens,
                          std::size_t kv_len) {
  using I = std::int64_t;
  const I B = static_cast<I>(batch), T = static_cast<I>(tokens), L = static_cast<I>(kv_len);
  const I H = static_cast<I>(s.hidden), F = static_cast<I>(s.intermediate),
          V = static_cast<I>(s.vocab);
  const I nq = static_cast<I>(s.heads), nkv = static_cast<I>(s.kv_heads),
          hd = static_cast<I>(s.head_dim);
  const I group = nq / nkv, qd = nq * hd, kvd = nkv * hd, S = static_cast<I>(s.slots);

  Graph g(s.kind());
  auto weight = [&](const std::string& name, std::vector<I> shape, DType dt = DType::f32) {
    return g.add_tensor(name, std::move(shape), dt, TensorKind::weight);
  };
  auto tmp = [&](const std::string& name, std::vector<I> shape, DType dt = DType::f32) {
    return g.add_tensor(name, std::move(shape), dt, TensorKind::intermediate);
  };
  // A matmul input in the MME's operand type: f32 as is, else cast to bf16
  // once per tensor (q, k and v share the cast of the normed rows).
  std::vector<std::pair<int, int>> casts;  // (f32 tensor, its bf16 cast)
  auto operand = [&](int x) {
    if (s.weights == DType::f32) return x;
    for (const auto& [from, to] : casts)
      if (from == x) return to;
    const TensorInfo& t = g.tensor(x);
    const int y = tmp(t.name + ".bf16", t.shape, DType::bf16);
    g.add_node(Op::cast_bf16, t.name + ".cast", {x}, {y});
    casts.emplace_back(x, y);
    return y;
  };
  // y = x W^T (+ b): W in the weights' type; f8_e4m3 carries "<name>.scale".
  auto matmul = [&](const std::string& name, const std::string& w_name, int x, I out, I in,
                    bool bias, int w = -1) {
    std::vector<int> ins{operand(x), w >= 0 ? w : weight(w_name, {out, in}, s.weights)};
    if (bias) ins.push_back(weight(name + ".b", {out}));
    if (s.weights == DType::f8_e4m3)
      ins.push_back(weight(name + ".scale", {s.per_channel ? out : 1}));
    auto shape = g.tensor(x).shape;
    shape.back() = out;
    return std::pair{ins, shape};
  };
  auto linear = [&](const std::string& name, int x, std::vector<I> in_shape, I out, I in,
                    bool bias) {
    (void)in_shape;
    auto [ins, shape] = matmul(name, name + ".w", x, out, in, bias);
    const int y = tmp(name + ".out", shape);
    g.add_node(Op::gemm, name, ins, {y}, {.transpose_b = true});
    return y;
  };
  auto norm = [&](const std::string& name, const std::string& w, int x) {
    const auto shape = g.tensor(x).shape;
    const I h = shape.back();
    const int y = tmp(name, shape);
    if (s.layer_norm)
      g.add_node(Op::layernorm, name, {x, weight(w, {h}), weight(w + ".b", {h})}, {y},
                 {.eps = s.eps});
    else
      g.add_node(Op::rmsnorm, name, {x, weight(w, {h})}, {y}, {.eps = s.eps});
    return y;
  };
  auto node = [&](Op op, const std::string& name, std::vector<int> ins, std::vector<I> shape,
                  NodeAttrs attrs = {}) {
    const int y = tmp(name, std::move(shape));
    g.add_node(op, name, std::move(ins), {y}, std::move(attrs));
    return y;
  };

  const int ids = g.add_tensor("ids", {B, T}, DType::i32, TensorKind::input);
  // Batch row j writes its own cache at its own positions: one index and one
  // pair of cache tensors per row (names without a row suffix for batch 1).
  auto row_name = [&](const std::string& base, I j) {
    return B == 1 ? base : base + ".b" + std::to_string(j);
  };
  std::vector<int> index;
  for (I j = 0; j < B; ++j)
    index.push_back(g.add_tensor(row_name("write_index", j), {T}, DType::i32, TensorKind::input));
  const bool rope = !s.learned_positions;
  // RoPE tables: shared [T, half] for batch 1, per row [B, T, half] above.
  const std::vector<I> cs_shape = B == 1 ? std::vector<I>{T, hd / 2} : std::vector<I>{B, T, hd / 2};
  const int cos = rope ? g.add_tensor("cos", cs_shape, DType::f32, TensorKind::input) : -1;
  const int sin = rope ? g.add_tensor("sin", cs_shape, DType::f32, TensorKind::input) : -1;
  const int pos_ids = rope ? -1 : g.add_tensor("positions", {B, T}, DType::i32, TensorKind::input);
  const int mask =
      s.has_full_mask() ? g.add_tensor("mask", {B, 1, 1, T, L}, DType::f32, TensorKind::input) : -1;
  const int window_mask = s.has_window_mask() ? g.add_tensor("window_mask", {B, 1, 1, T, L},
                                                             DType::f32, TensorKind::input)
                                              : -1;
  const int embed = weight("embed", {V, H});
  const int attn_scale = s.q_scale_folded() ? -1 : weight("attn_scale", {1, 1, 1, 1, 1});

  int x = node(Op::embedding, "embed.out", {ids, embed}, {B, T, H});
  if (!rope) {
    const int pe =
        node(Op::embedding, "pos_embed.out",
             {pos_ids, weight("pos_embed", {static_cast<I>(s.positions), H})}, {B, T, H});
    x = node(Op::add, "embed.sum", {x, pe}, {B, T, H});
  }
  for (std::size_t l = 0; l < s.layers; ++l) {
    auto nm = [&](const char* what) { return layer_name(l, what); };

    const int xn = norm(nm("attn_norm.out"), nm("attn_norm"), x);
    const int q = linear(nm("q"), xn, {B, T, H}, qd, H, s.qkv_bias);
    const int k = linear(nm("k"), xn, {B, T, H}, kvd, H, s.qkv_bias);
    const int v = linear(nm("v"), xn, {B, T, H}, kvd, H, s.qkv_bias);
    const int qr =
        rope ? node(Op::rope, nm("q.rope"), {q, cos, sin}, {B, T, qd}, {.head_dim = hd}) : q;
    const int kr =
        rope ? node(Op::rope, nm("k.rope"), {k, cos, sin}, {B, T, kvd}, {.head_dim = hd}) : k;

    // K/V rows to [B, kv_heads, T, hd], then index_copy into the cache.
    auto to_heads = [&](int t, const char* what) {
      const int r = node(Op::reshape, nm(what) + std::string(".4d"), {t}, {B, T, nkv, hd});
      return node(Op::transpose, nm(what) + std::string(".heads"), {r}, {B, nkv, T, hd},
                  {.perm = {0, 2, 1, 3}});
    };
    // Per batch row: its rows of K (V), written into its cache in place,
    // then the cache's first L positions read back; the rows are stacked
    // again for attention.
    auto cache_rw = [&](int heads, const char* what) {
      std::vector<int> reads;
      for (I j = 0; j < B; ++j) {
        const std::string c = row_name(nm(what), j);
        const int cache = g.add_tensor(c, {1, nkv, S, hd}, DType::f32, TensorKind::state);
        const int src =
            B == 1 ? heads
                   : node(Op::batch_row, c + ".src", {heads}, {1, nkv, T, hd}, {.length = j});
        g.add_node(Op::kv_write, c + ".write", {cache, index[static_cast<std::size_t>(j)], src},
                   {cache});
        reads.push_back(node(Op::kv_read, c + ".read", {cache}, {1, nkv, L, hd}, {.length = L}));
      }
      return B == 1 ? reads[0]
                    : node(Op::concat, nm(what) + std::string(".read"), reads, {B, nkv, L, hd});
    };
    const int K = cache_rw(to_heads(kr, "k"), "k_cache");
    const int Vv = cache_rw(to_heads(v, "v"), "v_cache");
    const int K3 = node(Op::reshape, nm("k_cache.read.3d"), {K}, {B * nkv, L, hd});
    const int V3 = node(Op::reshape, nm("v_cache.read.3d"), {Vv}, {B * nkv, L, hd});

    // Queries grouped by kv head: [B, kv_heads, group, T, hd] -> [B*kv_heads, group*T, hd].
    const int q5 = node(Op::reshape, nm("q.5d"), {qr}, {B, T, nkv, group, hd});
    const int qt =
        node(Op::transpose, nm("q.heads"), {q5}, {B, nkv, group, T, hd}, {.perm = {0, 2, 3, 1, 4}});
    const int q3 = node(Op::reshape, nm("q.3d"), {qt}, {B * nkv, group * T, hd});
    const int sc = node(Op::batch_gemm, nm("scores"), {q3, K3}, {B * nkv, group * T, L},
                        {.transpose_b = true});
    int sc5 = node(Op::reshape, nm("scores.5d"), {sc}, {B, nkv, group, T, L});
    if (!s.q_scale_folded())  // scores * 1/sqrt(head_dim), as the CPU backend scales them
      sc5 = node(Op::mul, nm("scores.scaled"), {sc5, attn_scale}, {B, nkv, group, T, L});
    const int msk = node(Op::add, nm("scores.masked"),
                         {sc5, s.has_window_mask() && s.windowed[l] ? window_mask : mask},
                         {B, nkv, group, T, L});
    const int p = node(Op::softmax, nm("probs"), {msk}, {B, nkv, group, T, L});
    const int p3 = node(Op::reshape, nm("probs.3d"), {p}, {B * nkv, group * T, L});
    const int ctx = node(Op::batch_gemm, nm("context"), {p3, V3}, {B * nkv, group * T, hd});
    const int c5 = node(Op::reshape, nm("context.5d"), {ctx}, {B, nkv, group, T, hd});
    const int ct = node(Op::transpose, nm("context.tokens"), {c5}, {B, T, nkv, group, hd},
                        {.perm = {0, 3, 1, 2, 4}});
    const int c3 = node(Op::reshape, nm("context.3d"), {ct}, {B, T, qd});
    const int att = linear(nm("o"), c3, {B, T, qd}, H, qd, s.o_bias);
    const int x1 = node(Op::add, nm("attn.residual"), {x, att}, {B, T, H});

    const int xn2 = norm(nm("mlp_norm.out"), nm("mlp_norm"), x1);
    int act = -1;
    if (s.gated) {
      const int gt = linear(nm("gate"), xn2, {B, T, H}, F, H, s.mlp_bias);
      const int up = linear(nm("up"), xn2, {B, T, H}, F, H, s.mlp_bias);
      act = node(Op::silu_mul, nm("act"), {gt, up}, {B, T, F});
    } else {
      const int up = linear(nm("up"), xn2, {B, T, H}, F, H, s.mlp_bias);
      act = node(Op::gelu_tanh, nm("act"), {up}, {B, T, F});
    }
    const int dn = linear(nm("down"), act, {B, T, F}, H, F, s.mlp_bias);
    x = node(Op::add, nm("mlp.residual"), {x1, dn}, {B, T, H});
  }
  const int xf = norm("final_norm.out", "final_norm", x);
  auto [ins, shape] = matmul("lm_head", "lm_head", xf, V, H, false, s.head_is_embed() ? embed : -1);
  const int logits = g.add_tensor("logits", shape, DType::f32, TensorKind::output);
  g.add_node(Op::gemm, "lm_head", ins, {logits}, {.transpose_b = true});
  return g;
}

}  // namespace assistgen::hpu::detail

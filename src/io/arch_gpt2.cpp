// GPT-2 in the architecture registry: GPT2LMHeadModel (gpt2, distilgpt2, ...).
// LayerNorm with bias, learned positions (n_positions of them, a hard limit),
// one fused c_attn for q/k/v, plain GELU MLP, tied head. Its Conv1D layers
// store weights [in, out], the transpose of nn.Linear, so every projection is
// marked `transposed`. Defaults follow HF's GPT2Config.
#include <string>

#include "assistgen/architecture.hpp"
#include "config_fields.hpp"

namespace assistgen {

namespace {

using detail::ConfigFields;

void parse_gpt2(const ConfigFields& fields, ModelConfig& c) {
  c.vocab_size = fields.size_or("vocab_size", 50257);
  c.hidden_size = fields.size_or("n_embd", 768);
  c.num_hidden_layers = fields.size_or("n_layer", 12);
  c.num_attention_heads = fields.size_or("n_head", 12);
  c.num_key_value_heads = c.num_attention_heads;
  c.max_position_embeddings = fields.size_or("n_positions", 1024);
  c.intermediate_size = fields.size_or("n_inner", 4 * c.hidden_size);
  if (c.num_attention_heads == 0) fields.fail("n_head", "must be > 0");
  if (c.hidden_size % c.num_attention_heads != 0)
    fields.fail("n_embd", "(" + std::to_string(c.hidden_size) + ") is not divisible by n_head (" +
                              std::to_string(c.num_attention_heads) + ")");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.norm = NormKind::layer_norm;
  c.norm_eps = fields.epsilon_or("layer_norm_epsilon", 1e-5);
  c.positions = PositionKind::learned;
  c.tie_word_embeddings = fields.boolean_or("tie_word_embeddings", true);
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.gated_mlp = false;
  detail::parse_activation(fields, "activation_function", "gelu_new", c);
  // Variants of the attention that this implementation does not model.
  if (!fields.boolean_or("scale_attn_weights", true))
    throw UnsupportedError(fields.source() + ": field 'scale_attn_weights' is false; only the 1/sqrt(head_dim) "
                                             "scaled attention of GPT-2 is supported");
  if (fields.boolean_or("scale_attn_by_inverse_layer_idx", false))
    throw UnsupportedError(fields.source() + ": field 'scale_attn_by_inverse_layer_idx' is true; not supported");
  if (fields.boolean_or("add_cross_attention", false))
    throw UnsupportedError(fields.source() + ": field 'add_cross_attention' is true; not supported");
  // GPT2Config's defaults when the ids are absent (null: none).
  c.bos_token_ids = {50256};
  c.eos_token_ids = {50256};
}

WeightSource vec(std::string name, std::size_t n) { return {{{std::move(name), n}}, false}; }
WeightSource conv1d(std::string name, std::size_t out) { return {{{std::move(name), out}}, true}; }

CheckpointLayout gpt2_layout(const ModelConfig& c, const std::function<bool(const std::string&)>& has) {
  // GPT2LMHeadModel checkpoints name the body "transformer.*"; some exports
  // of the bare GPT2Model drop the prefix.
  const std::string t = has("transformer.wte.weight") ? "transformer." : "";
  const std::size_t H = c.hidden_size, I = c.intermediate_size;
  const std::size_t qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  CheckpointLayout w;
  w.embed = vec(t + "wte.weight", c.vocab_size);
  w.position_embed = vec(t + "wpe.weight", c.max_position_embeddings);
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = t + "h." + std::to_string(l) + ".";
    LayerWeightSources L;
    L.attn_norm = vec(p + "ln_1.weight", H);
    L.attn_norm_bias = vec(p + "ln_1.bias", H);
    L.qkv = conv1d(p + "attn.c_attn.weight", qkv);
    L.qkv_bias = vec(p + "attn.c_attn.bias", qkv);
    L.o = conv1d(p + "attn.c_proj.weight", H);
    L.o_bias = vec(p + "attn.c_proj.bias", H);
    L.mlp_norm = vec(p + "ln_2.weight", H);
    L.mlp_norm_bias = vec(p + "ln_2.bias", H);
    L.mlp_in = conv1d(p + "mlp.c_fc.weight", I);
    L.mlp_in_bias = vec(p + "mlp.c_fc.bias", I);
    L.mlp_out = conv1d(p + "mlp.c_proj.weight", H);
    L.mlp_out_bias = vec(p + "mlp.c_proj.bias", H);
    // The causal-mask buffers older checkpoints saved; not weights.
    w.ignored.push_back(p + "attn.bias");
    w.ignored.push_back(p + "attn.masked_bias");
    w.layers.push_back(std::move(L));
  }
  w.final_norm = vec(t + "ln_f.weight", H);
  w.final_norm_bias = vec(t + "ln_f.bias", H);
  if (c.tie_word_embeddings)
    w.ignored.push_back("lm_head.weight");  // a stored copy of wte; HF ties it
  else
    w.lm_head = vec("lm_head.weight", c.vocab_size);  // an nn.Linear: [vocab, hidden]
  return w;
}

}  // namespace

extern const Architecture kGpt2Architecture{"GPT2LMHeadModel", "gpt2", parse_gpt2, gpt2_layout};

}  // namespace assistgen

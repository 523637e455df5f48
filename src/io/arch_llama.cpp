// The Llama family of the architecture registry: LlamaForCausalLM,
// MistralForCausalLM and Qwen2ForCausalLM. Same layer (RMSNorm, RoPE, GQA,
// gated SiLU MLP) and tensor names; they differ in biases, defaults and the
// sliding window. Defaults follow HF's LlamaConfig, MistralConfig, Qwen2Config.
#include <string>

#include "assistgen/architecture.hpp"
#include "config_fields.hpp"

namespace assistgen {

namespace {

using detail::ConfigFields;

// Fields the three share; `default_max_positions` is the HF default of
// max_position_embeddings.
void parse_common(const ConfigFields& fields, ModelConfig& c, std::size_t default_max_positions) {
  c.vocab_size = fields.size("vocab_size");
  c.hidden_size = fields.size("hidden_size");
  c.intermediate_size = fields.size("intermediate_size");
  c.num_hidden_layers = fields.size("num_hidden_layers");
  c.num_attention_heads = fields.size("num_attention_heads");
  c.num_key_value_heads = fields.size_or("num_key_value_heads", c.num_attention_heads);
  if (fields.get("head_dim") != nullptr) {
    c.head_dim = fields.size("head_dim");
  } else {
    if (c.num_attention_heads == 0) fields.fail("num_attention_heads", "must be > 0");
    if (c.hidden_size % c.num_attention_heads != 0) {
      fields.fail("hidden_size", "(" + std::to_string(c.hidden_size) +
                                     ") is not divisible by num_attention_heads (" +
                                     std::to_string(c.num_attention_heads) + ") and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.max_position_embeddings = fields.size_or("max_position_embeddings", default_max_positions);
  c.norm = NormKind::rms_norm;
  c.norm_eps = fields.epsilon_or("rms_norm_eps", 1e-6);
  c.positions = PositionKind::rope;
  c.rope_theta = fields.number_or("rope_theta", 10000.0);
  c.rope_scaling = detail::parse_rope_scaling(fields);
  c.tie_word_embeddings = fields.boolean_or("tie_word_embeddings", false);
  c.gated_mlp = true;
  detail::parse_activation(fields, "hidden_act", "silu", c);
}

void parse_llama(const ConfigFields& fields, ModelConfig& c) {
  parse_common(fields, c, 2048);
  // LlamaConfig.attention_bias puts a bias on q, k, v and o alike.
  c.attention_bias = fields.boolean_or("attention_bias", false);
  c.o_proj_bias = c.attention_bias;
  c.mlp_bias = fields.boolean_or("mlp_bias", false);
}

void parse_mistral(const ConfigFields& fields, ModelConfig& c) {
  parse_common(fields, c, 4096 * 32);
  // HF's MistralConfig defaults to a 4096-position window when the field is
  // absent; an explicit null means no window. Every layer uses it.
  c.sliding_window = fields.contains("sliding_window") ? fields.size_or("sliding_window", 0) : 4096;
}

void parse_qwen2(const ConfigFields& fields, ModelConfig& c) {
  parse_common(fields, c, 32768);
  // Qwen2 always has q/k/v biases and never an o_proj or MLP bias.
  c.attention_bias = true;
  // Qwen2Config: sliding_window counts only with use_sliding_window, and then
  // only in the layers `layer_types` marks "sliding_attention" (when given),
  // else in layers >= max_window_layers (default 28).
  if (!fields.boolean_or("use_sliding_window", false)) return;
  c.sliding_window = fields.size_or("sliding_window", 0);
  if (c.sliding_window == 0) return;
  c.sliding_layers.assign(c.num_hidden_layers, false);
  if (const auto* types = fields.get("layer_types")) {
    if (!types->is_array() || types->size() != c.num_hidden_layers)
      fields.fail("layer_types", "must be a list of " + std::to_string(c.num_hidden_layers) +
                                     " strings (one per layer)");
    for (std::size_t i = 0; i < types->size(); ++i) {
      const auto& t = (*types)[i];
      if (t == "sliding_attention") {
        c.sliding_layers[i] = true;
      } else if (t != "full_attention") {
        fields.fail("layer_types", "entry " + std::to_string(i) + " is " + io::detail::json_excerpt(t) +
                                       "; expected \"full_attention\" or \"sliding_attention\"");
      }
    }
  } else {
    const std::size_t first = fields.size_or("max_window_layers", 28);
    for (std::size_t i = first; i < c.num_hidden_layers; ++i) c.sliding_layers[i] = true;
  }
}

WeightSource one(std::string name, std::size_t rows) { return {{{std::move(name), rows}}, false}; }

CheckpointLayout llama_layout(const ModelConfig& c, const std::function<bool(const std::string&)>&) {
  const std::size_t H = c.hidden_size, I = c.intermediate_size;
  const std::size_t qd = c.num_attention_heads * c.head_dim, kvd = c.num_key_value_heads * c.head_dim;
  CheckpointLayout w;
  w.embed = one("model.embed_tokens.weight", c.vocab_size);
  for (std::size_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string a = p + "self_attn.", m = p + "mlp.";
    LayerWeightSources L;
    L.attn_norm = one(p + "input_layernorm.weight", H);
    L.qkv.parts = {{a + "q_proj.weight", qd}, {a + "k_proj.weight", kvd}, {a + "v_proj.weight", kvd}};
    if (c.attention_bias)
      L.qkv_bias.parts = {{a + "q_proj.bias", qd}, {a + "k_proj.bias", kvd}, {a + "v_proj.bias", kvd}};
    L.o = one(a + "o_proj.weight", H);
    if (c.o_proj_bias) L.o_bias = one(a + "o_proj.bias", H);
    L.mlp_norm = one(p + "post_attention_layernorm.weight", H);
    L.mlp_in.parts = {{m + "gate_proj.weight", I}, {m + "up_proj.weight", I}};
    L.mlp_out = one(m + "down_proj.weight", H);
    if (c.mlp_bias) {
      L.mlp_in_bias.parts = {{m + "gate_proj.bias", I}, {m + "up_proj.bias", I}};
      L.mlp_out_bias = one(m + "down_proj.bias", H);
    }
    w.layers.push_back(std::move(L));
  }
  w.final_norm = one("model.norm.weight", H);
  // Some tied checkpoints also store lm_head.weight; HF ignores it.
  if (c.tie_word_embeddings)
    w.ignored.push_back("lm_head.weight");
  else
    w.lm_head = one("lm_head.weight", c.vocab_size);
  w.ignored_suffixes.push_back("rotary_emb.inv_freq");  // a buffer some checkpoints keep; recomputed
  return w;
}

}  // namespace

extern const Architecture kLlamaArchitecture{"LlamaForCausalLM", "llama", parse_llama, llama_layout};
extern const Architecture kMistralArchitecture{"MistralForCausalLM", "mistral", parse_mistral, llama_layout};
extern const Architecture kQwen2Architecture{"Qwen2ForCausalLM", "qwen2", parse_qwen2, llama_layout};

}  // namespace assistgen

// load_gguf_model for general.architecture gpt2: llama.cpp's converter
// (GPT2Model) stores the Conv1D weights transposed to [out, in], drops the
// causal-mask buffers and writes the tied head again as output.weight. The
// views here restore Hugging Face's names and the [in, out] layout, so the
// architecture registry's GPT-2 layout (src/io/arch_gpt2.cpp) loads them as
// it loads a GPT2LMHeadModel directory.
#include <cstring>
#include <string>

#include "assistgen/error.hpp"
#include "gguf_quant.hpp"

namespace assistgen::io::detail {

namespace {

constexpr std::pair<std::string_view, std::string_view> kLayerNames[] = {
    {"attn_norm", "ln_1"},          {"ffn_norm", "ln_2"},   {"attn_qkv", "attn.c_attn"},
    {"attn_output", "attn.c_proj"}, {"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"},
};

// The HF name of a GGUF gpt2 tensor (whether it is a Conv1D weight), or the name itself.
std::string hf_name(const std::string& g, bool& conv1d) {
  conv1d = false;
  if (g == "token_embd.weight") return "transformer.wte.weight";
  if (g == "position_embd.weight") return "transformer.wpe.weight";
  if (g == "output_norm.weight") return "transformer.ln_f.weight";
  if (g == "output_norm.bias") return "transformer.ln_f.bias";
  if (g == "output.weight") return "lm_head.weight";
  if (g.rfind("blk.", 0) != 0) return g;
  const auto dot1 = g.find('.', 4), dot2 = dot1 == std::string::npos ? dot1 : g.find('.', dot1 + 1);
  if (dot2 == std::string::npos) return g;
  const std::string layer = g.substr(4, dot1 - 4), module = g.substr(dot1 + 1, dot2 - dot1 - 1),
                    suffix = g.substr(dot2 + 1);
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return g;
  for (const auto& [from, to] : kLayerNames)
    if (module == from) {
      conv1d = suffix == "weight" && module != "attn_norm" && module != "ffn_norm";
      return "transformer.h." + layer + "." + std::string(to) + "." + suffix;
    }
  return g;
}

}  // namespace

GgufModel load_gguf_gpt2(std::shared_ptr<GgufFile> file) {
  const GgufFile& g = *file;
  const std::string src = g.path().string();
  auto size = [&](const std::string& key) {
    return static_cast<std::size_t>(g.get_uint("gpt2." + key));
  };
  ModelConfig c;
  c.architecture = "GPT2LMHeadModel";
  c.model_type = "gpt2";
  const GgufTensorInfo& embd = g.tensor("token_embd.weight");
  if (embd.shape.size() != 2)
    throw FormatError(src + ": tensor 'token_embd.weight' has " +
                      std::to_string(embd.shape.size()) + " dimensions, expected 2");
  c.vocab_size = static_cast<std::size_t>(embd.shape[0]);
  c.hidden_size = size("embedding_length");
  c.intermediate_size = size("feed_forward_length");
  c.num_hidden_layers = size("block_count");
  c.num_attention_heads = size("attention.head_count");
  if (g.contains("gpt2.attention.head_count_kv") &&
      size("attention.head_count_kv") != c.num_attention_heads)
    throw UnsupportedError(src + ": key 'gpt2.attention.head_count_kv' differs from head_count");
  c.num_key_value_heads = c.num_attention_heads;
  if (c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0)
    throw ConfigError(
        src + ": key 'gpt2.attention.head_count' (" + std::to_string(c.num_attention_heads) +
        ") does not divide gpt2.embedding_length (" + std::to_string(c.hidden_size) + ")");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = size("context_length");
  c.norm = NormKind::layer_norm;
  c.norm_eps = g.get_float("gpt2.attention.layer_norm_epsilon");
  c.positions = PositionKind::learned;
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.gated_mlp = false;
  c.activation = Activation::gelu_tanh;
  c.hidden_act = "gelu_new";
  // Tied unless output.weight holds other values than token_embd.
  const GgufTensorInfo* out = g.find_tensor("output.weight");
  c.tie_word_embeddings =
      out == nullptr || (out->type == embd.type && out->data.size() == embd.data.size() &&
                         std::memcmp(out->data.data(), embd.data.data(), embd.data.size()) == 0);
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    if (!g.contains(key)) continue;
    const std::uint64_t id = g.get_uint(key);
    if (id >= c.vocab_size)
      throw ConfigError(src + ": key '" + key + "' is " + std::to_string(id) +
                        ", outside the vocabulary of " + std::to_string(c.vocab_size));
    (std::string_view(key).ends_with("bos_token_id") ? c.bos_token_ids : c.eos_token_ids)
        .push_back(static_cast<Token>(id));
  }
  c.validate(src);

  std::vector<TensorView> views;
  for (const GgufTensorInfo& t : g.tensors()) {
    bool conv1d = false;
    TensorView v = stored_view(t, src, hf_name(t.name, conv1d));
    if (conv1d && t.shape.size() == 2) {
      // [out, in] as stored -> Conv1D's [in, out]; the group form does not
      // survive a transpose (the registry transposes back at load).
      const std::size_t rows = static_cast<std::size_t>(t.shape[0]),
                        cols = static_cast<std::size_t>(t.shape[1]);
      TensorView plain = v;
      v.dtype = v.dtype == DType::f16 ? DType::f32 : v.dtype == DType::bf16 ? DType::f32 : v.dtype;
      v.shape = {t.shape[1], t.shape[0]};
      v.quantized = nullptr;
      v.decode = [plain, rows, cols](std::span<float> o) {
        std::vector<float> stored(o.size());
        plain.to_float(stored);
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t k = 0; k < cols; ++k) o[k * rows + r] = stored[r * cols + k];
      };
    }
    views.push_back(std::move(v));
  }
  return GgufModel{std::move(c), Checkpoint(g.path(), std::move(views), std::move(file))};
}

}  // namespace assistgen::io::detail

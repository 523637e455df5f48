// load_gguf_model (io/gguf.hpp): a GGUF file of the Llama family as a
// ModelConfig and a Checkpoint under Hugging Face tensor names, so that the
// backends' loaders and the architecture registry's layouts serve it as they
// serve a model directory.
//
// Undoing llama.cpp's rotary permutation: convert_hf_to_gguf.py (LlamaModel)
// stores q_proj / k_proj rows (weights and biases) per head as
// reshape(n_head, 2, d/2, ...).swapaxes(1, 2): GGUF row h*d + 2i + j holds
// HF row h*d + j*d/2 + i. Qwen2 files are not permuted (llama.cpp runs them
// with the NeoX rotary layout, which is HF's).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/io/gguf.hpp"
#include "gguf_quant.hpp"

namespace assistgen::io {

namespace {

// blk.N.<gguf> -> model.layers.N.<hf>
constexpr std::pair<std::string_view, std::string_view> kLayerNames[] = {
    {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

// The Hugging Face name of a GGUF tensor name, or the name itself when unknown.
std::string hf_name(const std::string& g) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (g.rfind("blk.", 0) != 0) return g;
  const auto dot1 = g.find('.', 4);
  if (dot1 == std::string::npos) return g;
  const auto dot2 = g.find('.', dot1 + 1);
  if (dot2 == std::string::npos) return g;
  const std::string layer = g.substr(4, dot1 - 4), module = g.substr(dot1 + 1, dot2 - dot1 - 1),
                    suffix = g.substr(dot2 + 1);
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return g;
  for (const auto& [from, to] : kLayerNames)
    if (module == from) return "model.layers." + layer + "." + std::string(to) + "." + suffix;
  return g;
}

}  // namespace

GgufModel load_gguf_model(const std::filesystem::path& path) {
  auto file = std::make_shared<GgufFile>(path);
  const GgufFile& g = *file;
  const std::string src = path.string();
  const std::string arch = g.get_string("general.architecture");
  if (arch == "gpt2") return detail::load_gguf_gpt2(file);
  ModelConfig c;
  if (arch == "llama") {
    c.architecture = "LlamaForCausalLM";
    c.model_type = "llama";
  } else if (arch == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
    c.model_type = "qwen2";
  } else {
    throw UnsupportedError(src + ": key 'general.architecture': '" + arch +
                           "' is not supported from GGUF files (supported: llama, qwen2, gpt2)");
  }
  const std::string a = arch + ".";
  auto size = [&](const std::string& key) { return static_cast<std::size_t>(g.get_uint(a + key)); };
  auto size_or = [&](const std::string& key, std::size_t def) { return g.contains(a + key) ? size(key) : def; };
  const GgufTensorInfo& embd = g.tensor("token_embd.weight");
  if (embd.shape.size() != 2)
    throw FormatError(src + ": tensor 'token_embd.weight' has " + std::to_string(embd.shape.size()) +
                      " dimensions, expected 2");
  c.vocab_size = static_cast<std::size_t>(embd.shape[0]);
  if (g.contains(a + "vocab_size") && size("vocab_size") != c.vocab_size)
    throw ConfigError(src + ": key '" + a + "vocab_size' is " + std::to_string(size("vocab_size")) +
                      " but token_embd.weight has " + std::to_string(c.vocab_size) + " rows");
  c.hidden_size = size("embedding_length");
  c.intermediate_size = size("feed_forward_length");
  c.num_hidden_layers = size("block_count");
  c.num_attention_heads = size("attention.head_count");
  c.num_key_value_heads = size_or("attention.head_count_kv", c.num_attention_heads);
  if (c.num_attention_heads == 0)
    throw ConfigError(src + ": key '" + a + "attention.head_count' must be > 0");
  c.head_dim = size_or("attention.key_length", c.hidden_size / c.num_attention_heads);
  if (size_or("attention.value_length", c.head_dim) != c.head_dim)
    throw UnsupportedError(src + ": key '" + a + "attention.value_length' differs from key_length");
  if (size_or("rope.dimension_count", c.head_dim) != c.head_dim)
    throw UnsupportedError(src + ": key '" + a + "rope.dimension_count' is " +
                           std::to_string(size("rope.dimension_count")) +
                           ": partial rotary embeddings are not supported (head_dim " +
                           std::to_string(c.head_dim) + ")");
  c.max_position_embeddings = size("context_length");
  c.norm = NormKind::rms_norm;
  c.norm_eps = g.get_float(a + "attention.layer_norm_rms_epsilon");
  c.positions = PositionKind::rope;
  c.rope_theta = g.contains(a + "rope.freq_base") ? g.get_float(a + "rope.freq_base") : 10000.0;
  if (g.contains(a + "rope.scaling.type")) {
    const std::string type = g.get_string(a + "rope.scaling.type");
    if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::linear;
      c.rope_scaling.factor = g.get_float(a + "rope.scaling.factor");
    } else if (type != "none") {
      throw UnsupportedError(src + ": key '" + a + "rope.scaling.type' is '" + type +
                             "'; supported: none, linear");
    }
  }
  if (g.find_tensor("rope_freqs.weight") != nullptr)
    throw UnsupportedError(src + ": tensor 'rope_freqs.weight' (llama3 RoPE factors) is not supported");
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  c.gated_mlp = true;
  c.activation = Activation::silu;
  c.hidden_act = "silu";
  if (arch == "qwen2") {
    c.attention_bias = true;
  } else {
    c.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.o_proj_bias = c.attention_bias;
    c.mlp_bias = g.find_tensor("blk.0.ffn_gate.bias") != nullptr;
    if (g.contains(a + "attention.sliding_window")) {
      // Our writer (tools/make_gguf.py) keeps Mistral's window here; llama.cpp ignores it.
      c.architecture = "MistralForCausalLM";
      c.model_type = "mistral";
      c.sliding_window = size("attention.sliding_window");
    }
  }
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    if (!g.contains(key)) continue;
    const std::uint64_t id = g.get_uint(key);
    if (id >= c.vocab_size)
      throw ConfigError(src + ": key '" + key + "' is " + std::to_string(id) + ", outside the vocabulary of " +
                        std::to_string(c.vocab_size));
    (std::string_view(key).ends_with("bos_token_id") ? c.bos_token_ids : c.eos_token_ids)
        .push_back(static_cast<Token>(id));
  }
  c.validate(src);

  std::vector<TensorView> views;
  views.reserve(g.tensors().size());
  for (const GgufTensorInfo& t : g.tensors()) {
    TensorView v = detail::stored_view(t, src, hf_name(t.name));
    const std::size_t n = static_cast<std::size_t>(t.numel());
    const bool permuted = arch == "llama" && (t.name.ends_with(".attn_q.weight") || t.name.ends_with(".attn_q.bias") ||
                                              t.name.ends_with(".attn_k.weight") || t.name.ends_with(".attn_k.bias"));
    if (permuted) {
      const std::size_t d = c.head_dim;
      const std::size_t rows = t.shape.empty() ? 0 : static_cast<std::size_t>(t.shape[0]);
      if (d % 2 != 0 || rows % d != 0)
        throw FormatError(src + ": tensor '" + t.name + "': " + std::to_string(rows) +
                          " rows are not whole heads of head_dim " + std::to_string(d));
      const std::size_t cols = rows == 0 ? 0 : n / rows;
      TensorView plain = v;  // decodes the stored order
      plain.decode = v.decode;
      if (v.quantized)
        v.quantized = [stored = v.quantized, rows, d] {
          std::vector<std::size_t> from(rows);  // HF row to -> GGUF row from[to]
          for (std::size_t h = 0; h < rows / d; ++h)
            for (std::size_t i = 0; i < d / 2; ++i)
              for (std::size_t j = 0; j < 2; ++j) from[h * d + j * (d / 2) + i] = h * d + 2 * i + j;
          return stored().take_rows(from);
        };
      v.dtype = v.dtype == DType::f16 ? DType::f32 : v.dtype;  // f16 values are exact in f32 too
      v.decode = [plain, rows, cols, d](std::span<float> out) {
        std::vector<float> stored(out.size());
        plain.to_float(stored);
        for (std::size_t h = 0; h < rows / d; ++h)
          for (std::size_t i = 0; i < d / 2; ++i)
            for (std::size_t j = 0; j < 2; ++j)
              std::memcpy(&out[(h * d + j * (d / 2) + i) * cols], &stored[(h * d + 2 * i + j) * cols],
                          cols * sizeof(float));
      };
    }
    views.push_back(std::move(v));
  }
  return GgufModel{std::move(c), Checkpoint(path, std::move(views), file)};
}

}  // namespace assistgen::io

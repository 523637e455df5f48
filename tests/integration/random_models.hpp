// Small random cpu::Transformer configurations of three families (Llama;
// Qwen2 with a sliding window on one layer; GPT-2 with learned positions),
// and helpers to compare logits bit for bit. Shared by the integration tests
// of batch invariance, of the AMX path and of the forward contract.
#pragma once

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/types.hpp"

namespace assistgen::testing_models {

inline ModelConfig config(const std::string& family, std::size_t hidden = 64) {
  ModelConfig c;
  c.max_position_embeddings = 128;
  c.vocab_size = 300;
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 3 / 2 + 5;  // not a multiple of the kernels' 32 columns
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = hidden / 4;
  if (family == "llama") {
    c.architecture = "LlamaForCausalLM";
    c.model_type = "llama";
  } else if (family == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
    c.model_type = "qwen2";
    c.attention_bias = true;
    c.sliding_window = 6;
    c.sliding_layers = {true, false};
  } else {
    c.architecture = "GPT2LMHeadModel";
    c.model_type = "gpt2";
    c.norm = NormKind::layer_norm;
    c.positions = PositionKind::learned;
    c.gated_mlp = false;
    c.activation = Activation::gelu_tanh;
    c.num_key_value_heads = 4;
    c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
    c.tie_word_embeddings = true;
  }
  return c;
}

inline const char* name_of(DType t) { return t == DType::f32 ? "f32" : t == DType::bf16 ? "bf16" : "i8"; }

inline std::vector<Token> some_tokens(std::size_t n, std::size_t vocab) {
  std::vector<Token> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<Token>((i * 37 + 11) % vocab);
  return t;
}

inline bool same_row(const Logits& a, std::size_t ra, const Logits& b, std::size_t rb) {
  return std::memcmp(a.row(ra).data(), b.row(rb).data(), a.cols() * sizeof(float)) == 0;
}

/// The rows of `tokens` computed one token at a time: the decode reference.
inline Logits decode_each(const cpu::Transformer& m, std::span<const Token> tokens) {
  auto cache = m.make_cache(tokens.size());
  Logits all(tokens.size(), m.vocab_size()), one;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    m.forward(tokens.subspan(i, 1), cache, one);
    std::memcpy(all.row(i).data(), one.data(), m.vocab_size() * sizeof(float));
  }
  return all;
}

/// Requires `ref`'s bits (decode_each of `tokens`) from blocks of each size in
/// `block_sizes` verified after the first `prefix` tokens, and from a prefill
/// of all of `tokens`.
inline void require_blocks_and_prefill(const cpu::Transformer& m, std::span<const Token> tokens,
                                       const Logits& ref, std::size_t prefix,
                                       std::span<const std::size_t> block_sizes) {
  for (const std::size_t mm : block_sizes) {
    auto cache = m.make_cache(tokens.size());
    m.forward(tokens.first(prefix), cache);
    const Logits block = m.forward(tokens.subspan(prefix, mm), cache);
    for (std::size_t r = 0; r < mm; ++r) {
      INFO("M " << mm << " row " << r);
      REQUIRE(same_row(block, r, ref, prefix + r));
    }
  }
  auto cache = m.make_cache(tokens.size());
  const Logits prefill = m.forward(tokens, cache);
  for (std::size_t r = 0; r < tokens.size(); ++r) REQUIRE(same_row(prefill, r, ref, r));
}

/// 1, 2, ..., n.
inline std::vector<std::size_t> sizes_up_to(std::size_t n) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i + 1;
  return v;
}

}  // namespace assistgen::testing_models

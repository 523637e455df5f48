// A downstream program: builds a small random model through the installed
// package, runs a forward pass and checks the logits are finite.
#include <assistgen/cpu/transformer.hpp>
#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  assistgen::ModelConfig cfg;
  cfg.architecture = "LlamaForCausalLM";
  cfg.model_type = "llama";
  cfg.vocab_size = 64;
  cfg.hidden_size = 32;
  cfg.intermediate_size = 48;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.head_dim = 8;
  cfg.max_position_embeddings = 128;
  auto model = assistgen::cpu::Transformer::random(cfg, 7);
  auto cache = model.make_cache(16);
  std::vector<assistgen::Token> tokens{1, 2, 3};
  auto logits = model.forward(tokens, cache);
  for (std::size_t i = 0; i < logits.rows(); ++i)
    for (float v : logits.row(i))
      if (!std::isfinite(v)) return 1;
  std::printf("consumer ok: %zu x %zu logits, cache size %zu\n", logits.rows(), logits.cols(),
              cache.size());
  return cache.size() == 3 ? 0 : 1;
}

// assistgen::load_model (declared in generate.hpp): a Hugging Face model
// directory onto the CPU backend, bundled with its tokenizer and generation
// defaults. It lives in assistgen::cpu because it constructs a cpu::Transformer;
// everything else of the text API is backend-independent (src/core/).
#include <memory>
#include <system_error>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"

namespace assistgen {

Model load_model(const std::filesystem::path& dir, const LoadModelOptions& options) {
  cpu::LoadOptions lo;
  lo.dtype = options.dtype;
  lo.threads = options.threads;
  lo.on_progress = options.on_progress;
  // The small files first: a missing tokenizer.json should not wait for the weights.
  Tokenizer tokenizer = Tokenizer::load(dir);
  GenerateOptions defaults;
  const std::filesystem::path gen = dir / "generation_config.json";
  std::error_code ec;
  if (std::filesystem::exists(gen, ec)) defaults = GenerateOptions::load_generation_config(gen);
  auto transformer = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir, lo));
  // HF derives the generation config from config.json when the file lacks a
  // field; the tokenizer's declarations come last.
  const ModelConfig& mc = transformer->config();
  if (!defaults.eos_token_id) {
    if (!mc.eos_token_ids.empty())
      defaults.eos_token_id = mc.eos_token_ids;
    else if (!tokenizer.eos_ids().empty())
      defaults.eos_token_id = tokenizer.eos_ids();
  }
  if (!defaults.bos_token_id) {
    if (!mc.bos_token_ids.empty())
      defaults.bos_token_id = mc.bos_token_ids.front();
    else
      defaults.bos_token_id = tokenizer.bos_id();
  }
  return Model(AnyModel(std::move(transformer)), std::move(tokenizer), std::move(defaults));
}

}  // namespace assistgen

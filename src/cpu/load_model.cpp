// assistgen::load_model (declared in generate.hpp): a Hugging Face model
// directory onto the CPU backend (or the one LoadModelOptions::backend
// loads), bundled with its tokenizer and generation defaults. It lives in
// assistgen::cpu because it constructs a cpu::Transformer; everything else
// of the text API is backend-independent (src/core/).
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <system_error>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/chat_template.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/io/gguf.hpp"

namespace assistgen {

Model load_model(const std::filesystem::path& dir, const LoadModelOptions& options) {
  cpu::LoadOptions lo;
  lo.dtype = options.dtype;
  lo.threads = options.threads;
  lo.on_progress = options.on_progress;
  lo.tensor_parallel = options.tensor_parallel;
  // The small files first: a missing tokenizer.json should not wait for the weights.
  Tokenizer tokenizer = Tokenizer::load(dir);
  GenerateOptions defaults;
  // A GGUF file: tokenizer.json and generation_config.json come from its directory.
  const bool gguf = io::is_gguf_path(dir);
  const std::filesystem::path files =
      !gguf ? dir : dir.has_parent_path() ? dir.parent_path() : std::filesystem::path(".");
  const std::filesystem::path gen = files / "generation_config.json";
  std::error_code ec;
  if (std::filesystem::exists(gen, ec)) defaults = GenerateOptions::load_generation_config(gen);
  // Another backend (LoadModelOptions::backend) or the CPU one.
  std::optional<LoadedBackend> loaded;
  if (options.backend) {
    if (options.dtype || options.threads != 0 || options.on_progress)
      throw InvalidArgument(std::string("load_model: LoadModelOptions::") +
                            (options.dtype            ? "dtype"
                             : options.threads != 0   ? "threads"
                                                      : "on_progress") +
                            " is the CPU backend's; with LoadModelOptions::backend, set it in "
                            "that backend's own options");
    loaded.emplace(options.backend(dir));
  } else {
    auto transformer = std::make_shared<const cpu::Transformer>(cpu::Transformer::load(dir, lo));
    const ModelConfig config = transformer->config();
    loaded.emplace(LoadedBackend{AnyModel(std::move(transformer)), config});
  }
  // HF derives the generation config from config.json when the file lacks a
  // field; the tokenizer's declarations come last.
  const ModelConfig& mc = loaded->config;
  const std::string config_file = gguf ? dir.string() : (dir / "config.json").string();
  // A tokenizer with ids the model has no rows for would hand the decoders a
  // prompt they reject with no word of which file is wrong.
  if (tokenizer.vocab_size() > mc.vocab_size)
    throw ConfigError((files / "tokenizer.json").string() + ": the tokenizer has ids up to " +
                      std::to_string(tokenizer.vocab_size() - 1) + " but " + config_file +
                      " gives vocab_size " + std::to_string(mc.vocab_size));
  // generation_config.json's ids are checked here, where its name is known,
  // rather than by a decoder at the first generate().
  auto check_ids = [&](const char* field, const std::vector<Token>& ids) {
    for (const Token id : ids)
      if (id < 0 || static_cast<std::size_t>(id) >= mc.vocab_size)
        throw ConfigError(gen.string() + ": " + field + " holds token id " + std::to_string(id) +
                          ", outside [0, vocab_size = " + std::to_string(mc.vocab_size) +
                          ") of " + config_file);
  };
  if (defaults.eos_token_id) check_ids("eos_token_id", *defaults.eos_token_id);
  if (defaults.bos_token_id) check_ids("bos_token_id", {*defaults.bos_token_id});
  if (defaults.suppress_tokens) check_ids("suppress_tokens", *defaults.suppress_tokens);
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
  Model model(std::move(loaded->model), std::move(tokenizer), std::move(defaults));
  // The directory's chat template, as HF's tokenizer carries it. One that
  // fails to load leaves the model usable for plain text; chat() reports why.
  try {
    if (ChatTemplate::available(files))
      model.chat_template_ = std::make_shared<const ChatTemplate>(ChatTemplate::load(files));
  } catch (const Error& e) {
    model.chat_template_error_ = e.what();
  }
  return model;
}

}  // namespace assistgen

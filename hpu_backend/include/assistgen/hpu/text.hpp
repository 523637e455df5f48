// The HPU backend under the text API: a loader for
// LoadModelOptions::backend, so that load_model (and with it Model::generate,
// generate_batch and chat) runs hpu::Transformer:
//
//   auto target = assistgen::load_model("models/kjv-target",
//                                       {.backend = assistgen::hpu::text_backend()});
//
// load_model still reads the tokenizer, generation_config.json and the chat
// template; only the weights go to the HPU backend.
#pragma once

#include <filesystem>
#include <functional>

#include "assistgen/generate.hpp"
#include "assistgen/hpu/transformer.hpp"

namespace assistgen::hpu {

/// A LoadModelOptions::backend that loads hpu::Transformer with `options`
/// (options_for(positions): kv_len buckets for `positions` cache positions,
/// bounded by the model, warm-up at load, the CPU reference device).
std::function<LoadedBackend(const std::filesystem::path& dir)> text_backend(LoadOptions options);
/// The same with options_for(2048, device) (bounded by each model's
/// max_position_embeddings; set options to go beyond).
std::function<LoadedBackend(const std::filesystem::path& dir)> text_backend(
    std::shared_ptr<Device> device = nullptr);

}  // namespace assistgen::hpu

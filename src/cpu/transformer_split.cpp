// cpu::Transformer: a forward pass split at a layer (layer_split.hpp), for
// self-speculation. Both halves are the one forward pass of
// transformer_forward.cpp run over a range of layers; the residual rows
// carry the exact floats from one half to the other, so the split pass gives
// the bits of the whole one.
#include <omp.h>

#include <string>
#include <vector>

#include "assistgen/error.hpp"
#include "transformer_impl.hpp"

namespace assistgen::cpu {

namespace {

void check_split(const char* who, std::size_t split, std::size_t layers) {
  if (split == 0 || split > layers)
    throw InvalidArgument(std::string(who) + ": split layer " + std::to_string(split) +
                          " must be in [1, " + std::to_string(layers) + "] (the model has " +
                          std::to_string(layers) + " layers)");
}

}  // namespace

std::size_t Transformer::num_layers() const { return impl_->layers.size(); }

std::size_t Transformer::hidden_size() const { return impl_->cfg.hidden_size; }

void Transformer::forward_lower(std::span<const Token> tokens, Cache& cache, std::size_t split,
                                std::vector<float>& hidden, Logits& out,
                                std::size_t outputs) const {
  constexpr const char* kWho = "cpu::Transformer::forward_lower";
  check_split(kWho, split, num_layers());
  if (tokens.empty()) throw InvalidArgument(std::string(kWho) + ": no tokens to append");
  const ForwardRequest request{tokens, {}, outputs};
  Cache* const cache_ptr = &cache;
  LayerPlan plan;
  plan.early_exit = split;
  ForwardStage stage;
  stage.hidden_out = &hidden;
  impl_->forward({&request, 1}, {&cache_ptr, 1}, out, plan, stage);
}

void Transformer::forward_upper(Cache& cache, std::size_t first, std::span<const float> hidden,
                                std::size_t split, Logits& out, std::size_t outputs) const {
  constexpr const char* kWho = "cpu::Transformer::forward_upper";
  check_split(kWho, split, num_layers());
  const std::size_t H = hidden_size();
  if (hidden.empty() || hidden.size() % H != 0)
    throw InvalidArgument(std::string(kWho) + ": " + std::to_string(hidden.size()) +
                          " hidden floats are not a positive number of rows of " +
                          std::to_string(H));
  const std::size_t rows = hidden.size() / H;
  if (first > cache.size() || rows > cache.size() - first)
    throw InvalidArgument(std::string(kWho) + ": slots [" + std::to_string(first) + ", " +
                          std::to_string(first + rows) + ") are not all in the cache (size " +
                          std::to_string(cache.size()) + ")");
  // The tokens only size the request: the embeddings are not read (the rows
  // start from `hidden`), so any valid id stands in for them.
  thread_local std::vector<Token> placeholder;
  placeholder.assign(rows, 0);
  const ForwardRequest request{placeholder, {}, outputs};
  Cache* const cache_ptr = &cache;
  ForwardStage stage;
  stage.begin_layer = split;
  stage.hidden_in = hidden;
  stage.resume_slot = first;
  impl_->forward({&request, 1}, {&cache_ptr, 1}, out, {}, stage);
}

}  // namespace assistgen::cpu

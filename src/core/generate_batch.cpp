// Model::generate_batch and generate_batch_ids: the text API over BatchEngine.
// generate_batch submits every request to one TextBatchEngine
// (text_engine.cpp), which prepares each as generate() prepares it
// (text_run.hpp) and makes its text with the same TextStream, so a request's
// result is the one generate() gives it alone; generate_batch_ids runs the
// token-level BatchEngine directly.
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/text_engine.hpp"
#include "batch_sources.hpp"
#include "text_run.hpp"

namespace assistgen {

namespace {

using detail::draft_sources;
using detail::LookupOrPlain;

// A request ready for the engine (prompt empty: it failed before).
struct Item {
  std::vector<Token> prompt;
  GenerationConfig cfg;
  std::size_t early_exit = 0;
};

// Runs the items that have no error yet through one BatchEngine whose
// sources `make_source(item)` makes; fills results, errors and stats.
template <class Source, class MakeSource>
void run_engine(const AnyModel& target, const std::vector<Item>& items,
                const std::vector<TokenCallback>& callbacks, const BatchGenerateOptions& batch,
                MakeSource&& make_source, std::vector<GenerationResult>& results,
                std::vector<std::exception_ptr>& errors, BatchStats& stats) {
  KvCacheManager caches(batch.max_cache_bytes);
  BatchEngine<AnyModel, Source> engine(
      target, {.max_batch = batch.max_batch, .name = "generate_batch"}, &caches);
  std::vector<std::size_t> index_of;  // engine id -> request
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (errors[i]) continue;
    try {
      const auto id =
          engine.submit(items[i].prompt, items[i].cfg, make_source(items[i]), callbacks[i]);
      index_of.resize(id + 1);
      index_of[id] = i;
    } catch (...) {
      errors[i] = std::current_exception();
    }
  }
  engine.run();
  for (auto& f : engine.take_finished()) {
    const std::size_t i = index_of[f.id];
    results[i] = std::move(f.result);
    if (f.error) errors[i] = f.error;
  }
  stats = engine.stats();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

BatchIdsResult generate_batch_ids(const AnyModel& target, const AnyModel* draft,
                                  std::span<const BatchIdsRequest> requests,
                                  const BatchGenerateOptions& batch,
                                  const std::function<bool(std::size_t, Token)>& on_token) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t n = requests.size();
  BatchIdsResult out;
  out.results.resize(n);
  out.errors.resize(n);
  out.assistance.resize(n, Assistance::none);
  std::vector<Item> items(n);
  std::vector<TokenCallback> callbacks(n);
  for (std::size_t i = 0; i < n; ++i) {
    items[i] = {requests[i].prompt, requests[i].config, 0};
    if (on_token) callbacks[i] = [&on_token, i](Token t) { return on_token(i, t); };
    out.assistance[i] = draft                                         ? Assistance::draft
                        : requests[i].early_exit                      ? Assistance::early_exit
                        : requests[i].config.prompt_lookup_num_tokens ? Assistance::prompt_lookup
                                                                      : Assistance::none;
    items[i].early_exit = requests[i].early_exit;
    if (draft && requests[i].early_exit)
      out.errors[i] = std::make_exception_ptr(InvalidArgument(
          "generate_batch_ids: early_exit (self-speculation) and a draft model are alternatives: "
          "give one"));
  }
  if (draft && batch.trees())
    run_engine<DraftTreeCandidates<AnyModel>>(
        target, items, callbacks, batch,
        [make = detail::tree_sources(*draft, target, batch)](const Item& item) { return make(item.cfg); },
        out.results, out.errors, out.stats);
  else if (draft)
    run_engine<DraftModelCandidates<AnyModel>>(
        target, items, callbacks, batch,
        [make = draft_sources(*draft, target)](const Item& item) { return make(item.cfg); },
        out.results, out.errors, out.stats);
  else
    run_engine<LookupOrPlain>(
        target, items, callbacks, batch,
        [&target](const Item& item) { return LookupOrPlain(target, item.cfg, item.early_exit); },
        out.results, out.errors, out.stats);
  out.seconds = seconds_since(t0);
  return out;
}

BatchTextResult Model::generate_batch(std::span<const BatchRequest> requests,
                                      const Model* assistant, const BatchGenerateOptions& batch,
                                      const BatchTextCallback& on_text) const {
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t n = requests.size();
  BatchTextResult out;
  out.results.resize(n);
  out.errors.resize(n);
  TextBatchEngine engine(*this, assistant, batch);
  std::vector<std::size_t> index_of;  // engine id -> request
  for (std::size_t i = 0; i < n; ++i) {
    try {
      const BatchRequest& q = requests[i];
      TextCallback piece_to;
      if (on_text) piece_to = [&on_text, i](std::string_view piece) { return on_text(i, piece); };
      const auto id =
          q.tokens ? engine.submit(*q.tokens, q.options, std::move(piece_to))
                   : engine.submit(std::string_view(q.prompt), q.options, std::move(piece_to));
      index_of.resize(id + 1);
      index_of[id] = i;
    } catch (...) {
      out.errors[i] = std::current_exception();
    }
  }
  engine.run();
  for (auto& f : engine.take_finished()) {
    const std::size_t i = index_of[f.id];
    out.results[i] = std::move(f.result);
    if (f.error) out.errors[i] = f.error;
  }
  out.stats = engine.stats();
  out.seconds = seconds_since(t0);
  return out;
}

namespace {

std::vector<TextResult> texts_only(BatchTextResult r) {
  for (const auto& e : r.errors)
    if (e) std::rethrow_exception(e);
  return std::move(r.results);
}

std::vector<BatchRequest> requests_of(const std::vector<std::string>& prompts,
                                      const GenerateOptions& options) {
  std::vector<BatchRequest> q(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    q[i].prompt = prompts[i];
    q[i].options = options;
  }
  return q;
}

}  // namespace

std::vector<TextResult> Model::generate_batch(const std::vector<std::string>& prompts,
                                              const GenerateOptions& options,
                                              const BatchTextCallback& on_text,
                                              const BatchGenerateOptions& batch) const {
  const std::vector<BatchRequest> q = requests_of(prompts, options);
  return texts_only(generate_batch(std::span<const BatchRequest>(q), nullptr, batch, on_text));
}

std::vector<TextResult> Model::generate_batch(const std::vector<std::string>& prompts,
                                              const Model& assistant,
                                              const GenerateOptions& options,
                                              const BatchTextCallback& on_text,
                                              const BatchGenerateOptions& batch) const {
  const std::vector<BatchRequest> q = requests_of(prompts, options);
  return texts_only(generate_batch(std::span<const BatchRequest>(q), &assistant, batch, on_text));
}

}  // namespace assistgen

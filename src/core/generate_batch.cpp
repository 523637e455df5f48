// Model::generate_batch and generate_batch_ids: the text API over BatchEngine.
// Each request is prepared exactly as generate() prepares it (text_run.hpp),
// runs in one engine with the others, and its text is made by the same
// TextStream, so a request's result is the one generate() gives it alone.
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/batch_engine.hpp"
#include "assistgen/candidates/different_tokenizer.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/generate.hpp"
#include "text_run.hpp"

namespace assistgen {

namespace {

// Prompt lookup for the sequences that ask for it, nothing (plain decoding)
// for the others, so that one engine runs both.
class LookupOrPlain {
 public:
  explicit LookupOrPlain(const GenerationConfig& cfg) {
    if (cfg.prompt_lookup_num_tokens > 0) lookup_.emplace(cfg);
  }
  void start(std::size_t capacity, std::size_t keep, CandidateContext& ctx) {
    if (lookup_) lookup_->start(capacity, keep, ctx);
  }
  std::size_t limit(const CandidateContext& ctx) const { return lookup_ ? lookup_->limit(ctx) : 0; }
  std::size_t propose(std::vector<Token>& seq, std::size_t n, std::size_t limit,
                      CandidateContext& ctx) {
    return lookup_ ? lookup_->propose(seq, n, limit, ctx) : 0;
  }
  std::span<const float> q_row(std::size_t j) const {
    return lookup_ ? lookup_->q_row(j) : std::span<const float>();
  }
  void discard(std::size_t n) {
    if (lookup_) lookup_->discard(n);
  }
  void learn(std::size_t n, std::size_t accepted, CandidateContext& ctx) {
    if (lookup_) lookup_->learn(n, accepted, ctx);
  }
  void cut(std::size_t n) {
    if (lookup_) lookup_->cut(n);
  }
  void finish(GenerationStats& stats) const {
    if (lookup_) lookup_->finish(stats);
  }

 private:
  std::optional<PromptLookupCandidates> lookup_;
};

// A request ready for the engine (prompt empty: it failed before).
struct Item {
  std::vector<Token> prompt;
  GenerationConfig cfg;
};

// Runs the items that have no error yet through one BatchEngine whose
// sources `make_source(cfg)` makes; fills results, errors and stats.
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
          engine.submit(items[i].prompt, items[i].cfg, make_source(items[i].cfg), callbacks[i]);
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

// Sources of a draft with the target's ids, checked as SpeculativeDecoder checks them.
auto draft_sources(const AnyModel& draft, const AnyModel& target) {
  return [&draft, vocab = target.vocab_size()](const GenerationConfig& c) {
    check_compatibility(draft.vocab_size(), vocab, c.draft_special_tokens, c.target_special_tokens);
    detail::reject_prompt_lookup_with_draft(c);
    return DraftModelCandidates<AnyModel>(draft, vocab);
  };
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
    items[i] = {requests[i].prompt, requests[i].config};
    if (on_token) callbacks[i] = [&on_token, i](Token t) { return on_token(i, t); };
    out.assistance[i] = draft                                         ? Assistance::draft
                        : requests[i].config.prompt_lookup_num_tokens ? Assistance::prompt_lookup
                                                                      : Assistance::none;
  }
  if (draft)
    run_engine<DraftModelCandidates<AnyModel>>(target, items, callbacks, batch,
                                               draft_sources(*draft, target), out.results,
                                               out.errors, out.stats);
  else
    run_engine<LookupOrPlain>(
        target, items, callbacks, batch, [](const GenerationConfig& c) { return LookupOrPlain(c); },
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
  std::vector<Item> items(n);
  std::vector<std::unique_ptr<detail::TextStream>> streams(n);
  std::vector<TokenCallback> callbacks(n);
  for (std::size_t i = 0; i < n; ++i) {
    try {
      const BatchRequest& q = requests[i];
      const bool parse_special =
          q.options.parse_special.value_or(defaults_.parse_special.value_or(false));
      std::vector<Token> ids =
          q.tokens ? *q.tokens : tokenizer_.encode(q.prompt, {.parse_special = parse_special});
      detail::PreparedRun prep = detail::prepare_run(*this, std::move(ids), assistant, q.options);
      out.results[i].prompt_tokens = prep.prompt;
      items[i] = {std::move(prep.prompt), std::move(prep.cfg)};
      TextCallback piece_to;
      if (on_text) piece_to = [&on_text, i](std::string_view piece) { return on_text(i, piece); };
      streams[i] = std::make_unique<detail::TextStream>(tokenizer_, prep.skip_special, prep.stops,
                                                        std::move(piece_to));
      callbacks[i] = streams[i]->token_callback();
    } catch (...) {
      out.errors[i] = std::current_exception();
    }
  }

  std::vector<GenerationResult> results(n);
  Assistance mode = Assistance::none;
  if (assistant && detail::shares_ids(*this, *assistant)) {
    mode = Assistance::draft;
    run_engine<DraftModelCandidates<AnyModel>>(backend_, items, callbacks, batch,
                                               draft_sources(assistant->backend_, backend_),
                                               results, out.errors, out.stats);
  } else if (assistant) {
    mode = Assistance::universal;
    run_engine<DifferentTokenizerCandidates<AnyModel>>(
        backend_, items, callbacks, batch,
        [&](const GenerationConfig& c) {
          if (c.do_sample)
            throw UnsupportedError(
                "GenerationConfig: do_sample is true, but a draft with a different tokenizer "
                "supports greedy decoding only (as in Hugging Face); set do_sample to false or use "
                "a draft with the target's tokenizer");
          detail::reject_prompt_lookup_with_draft(c);
          UniversalOptions uo;
          uo.draft_suppress_tokens = assistant->masked_;
          return DifferentTokenizerCandidates<AnyModel>(assistant->backend_, assistant->tokenizer_,
                                                        tokenizer_, backend_.vocab_size(),
                                                        std::move(uo));
        },
        results, out.errors, out.stats);
  } else {
    run_engine<LookupOrPlain>(
        backend_, items, callbacks, batch,
        [](const GenerationConfig& c) { return LookupOrPlain(c); }, results, out.errors, out.stats);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!streams[i]) continue;  // failed before it could run
    streams[i]->finish(std::move(results[i]), out.results[i]);
    out.results[i].assistance = mode != Assistance::none ? mode
                                : items[i].cfg.prompt_lookup_num_tokens > 0
                                    ? Assistance::prompt_lookup
                                    : Assistance::none;
  }
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

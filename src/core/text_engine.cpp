// TextBatchEngine: BatchEngine over a Model's backend, with each sequence
// prepared as generate() prepares it (text_run.hpp) and its text made by the
// same TextStream. The engine's candidate source type is fixed by the
// assistant (a draft with the target's ids, one with another tokenizer, or
// none: plain decoding, prompt lookup or self-speculation per request), so the typed
// BatchEngine sits behind a small virtual interface.
#include "assistgen/text_engine.hpp"

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "assistgen/candidates/different_tokenizer.hpp"
#include "batch_sources.hpp"
#include "text_run.hpp"

namespace assistgen {

namespace {

// What TextBatchEngine needs of a BatchEngine<AnyModel, Source>.
class AnyBatch {
 public:
  virtual ~AnyBatch() = default;
  virtual std::uint64_t submit(std::span<const Token> prompt, GenerationConfig cfg,
                               std::size_t early_exit, TokenCallback on_token) = 0;
  virtual bool cancel(std::uint64_t id) = 0;
  virtual bool step() = 0;
  virtual std::vector<BatchEngine<AnyModel>::Finished> take_finished() = 0;
  virtual std::size_t running() const = 0;
  virtual std::size_t waiting() const = 0;
  virtual BatchStats stats() const = 0;
};

template <class Source>
class TypedBatch final : public AnyBatch {
 public:
  // (configuration, early-exit layer: 0 unless the engine has no assistant)
  using MakeSource = std::function<Source(const GenerationConfig&, std::size_t)>;
  TypedBatch(const AnyModel& target, const BatchGenerateOptions& batch, MakeSource make)
      : caches_(batch.max_cache_bytes),
        engine_(target, {.max_batch = batch.max_batch, .name = "TextBatchEngine"}, &caches_),
        make_(std::move(make)) {}
  std::uint64_t submit(std::span<const Token> prompt, GenerationConfig cfg, std::size_t early_exit,
                       TokenCallback on_token) override {
    Source source = make_(cfg, early_exit);
    return engine_.submit(prompt, std::move(cfg), std::move(source), std::move(on_token));
  }
  bool cancel(std::uint64_t id) override { return engine_.cancel(id); }
  bool step() override { return engine_.step(); }
  std::vector<BatchEngine<AnyModel>::Finished> take_finished() override {
    std::vector<BatchEngine<AnyModel>::Finished> out;
    for (auto& f : engine_.take_finished())
      out.push_back({f.id, std::move(f.result), f.error, f.cancelled});
    return out;
  }
  std::size_t running() const override { return engine_.running(); }
  std::size_t waiting() const override { return engine_.waiting(); }
  BatchStats stats() const override { return engine_.stats(); }

 private:
  KvCacheManager caches_;
  BatchEngine<AnyModel, Source> engine_;
  MakeSource make_;
};

}  // namespace

struct TextBatchEngine::Impl {
  const Model* target = nullptr;
  const Model* assistant = nullptr;
  Assistance mode = Assistance::none;
  std::unique_ptr<AnyBatch> batch;
  struct Live {
    std::unique_ptr<detail::TextStream> stream;
    std::vector<Token> prompt;
    Assistance assistance = Assistance::none;  // without an assistant: lookup, early exit or none
  };
  // Held across a submission and the stream's registration, so a sequence
  // that finishes at once still finds its stream in take_finished().
  std::mutex mutex;
  std::map<SequenceId, Live> live;
};

TextBatchEngine::TextBatchEngine(const Model& target, const Model* assistant,
                                 const BatchGenerateOptions& batch)
    : impl_(std::make_unique<Impl>()) {
  impl_->target = &target;
  impl_->assistant = assistant;
  const AnyModel& t = target.backend();
  // Paired as generate() pairs them (Model::pairing: the one place of the rules).
  const bool paired = assistant && target.pairing(*assistant).first == Assistance::draft;
  if (paired && batch.trees()) {
    impl_->mode = Assistance::draft;
    impl_->batch = std::make_unique<TypedBatch<DraftTreeCandidates<AnyModel>>>(
        t, batch,
        [make = detail::tree_sources(assistant->backend(), t, batch)](const GenerationConfig& c,
                                                                      std::size_t) { return make(c); });
  } else if (paired) {
    impl_->mode = Assistance::draft;
    impl_->batch = std::make_unique<TypedBatch<DraftModelCandidates<AnyModel>>>(
        t, batch,
        [make = detail::draft_sources(assistant->backend(), t)](const GenerationConfig& c,
                                                                std::size_t) { return make(c); });
  } else if (assistant) {
    impl_->mode = Assistance::universal;
    impl_->batch = std::make_unique<TypedBatch<DifferentTokenizerCandidates<AnyModel>>>(
        t, batch, [&target, assistant](const GenerationConfig& c, std::size_t) {
          if (c.do_sample)
            throw UnsupportedError(
                "GenerationConfig: do_sample is true, but a draft with a different tokenizer "
                "supports greedy decoding only (as in Hugging Face); set do_sample to false or use "
                "a draft with the target's tokenizer");
          detail::reject_prompt_lookup_with_draft(c);
          UniversalOptions uo;
          const auto masked = assistant->masked_tokens();
          uo.draft_suppress_tokens.assign(masked.begin(), masked.end());
          return DifferentTokenizerCandidates<AnyModel>(
              assistant->backend(), assistant->tokenizer(), target.tokenizer(),
              target.backend().vocab_size(), std::move(uo));
        });
  } else {
    impl_->batch = std::make_unique<TypedBatch<detail::LookupOrPlain>>(
        t, batch, [tp = &t](const GenerationConfig& c, std::size_t early_exit) {
          return detail::LookupOrPlain(*tp, c, early_exit);
        });
  }
}

TextBatchEngine::~TextBatchEngine() = default;

TextBatchEngine::SequenceId TextBatchEngine::submit(std::vector<Token> prompt,
                                                    const GenerateOptions& options,
                                                    TextCallback on_text) {
  const Model& target = *impl_->target;
  detail::PreparedRun prep =
      detail::prepare_run(target, std::move(prompt), impl_->assistant, options);
  Impl::Live live;
  live.assistance = prep.early_exit                         ? Assistance::early_exit
                    : prep.cfg.prompt_lookup_num_tokens > 0 ? Assistance::prompt_lookup
                                                            : Assistance::none;
  live.stream = std::make_unique<detail::TextStream>(target.tokenizer(), prep.skip_special,
                                                     prep.stops, std::move(on_text));
  std::lock_guard lock(impl_->mutex);
  const SequenceId id =
      impl_->batch->submit(prep.prompt, std::move(prep.cfg), prep.early_exit,
                           live.stream->token_callback());
  live.prompt = std::move(prep.prompt);
  impl_->live.emplace(id, std::move(live));
  return id;
}

TextBatchEngine::SequenceId TextBatchEngine::submit(std::string_view prompt,
                                                    const GenerateOptions& options,
                                                    TextCallback on_text) {
  const Model& target = *impl_->target;
  const bool parse_special =
      options.parse_special.value_or(target.generation_defaults().parse_special.value_or(false));
  return submit(target.tokenizer().encode(prompt, {.parse_special = parse_special}), options,
                std::move(on_text));
}

bool TextBatchEngine::cancel(SequenceId id) { return impl_->batch->cancel(id); }

bool TextBatchEngine::step() { return impl_->batch->step(); }

void TextBatchEngine::run() {
  while (step()) {
  }
}

std::vector<TextBatchEngine::Finished> TextBatchEngine::take_finished() {
  auto done = impl_->batch->take_finished();
  std::vector<Finished> out;
  out.reserve(done.size());
  std::lock_guard lock(impl_->mutex);
  for (auto& f : done) {
    Finished r;
    r.id = f.id;
    r.error = f.error;
    r.cancelled = f.cancelled;
    auto it = impl_->live.find(f.id);
    if (it != impl_->live.end()) {
      it->second.stream->finish(std::move(f.result), r.result);
      r.result.prompt_tokens = std::move(it->second.prompt);
      r.result.assistance =
          impl_->mode != Assistance::none ? impl_->mode : it->second.assistance;
      impl_->live.erase(it);
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::size_t TextBatchEngine::running() const { return impl_->batch->running(); }
std::size_t TextBatchEngine::waiting() const { return impl_->batch->waiting(); }
BatchStats TextBatchEngine::stats() const { return impl_->batch->stats(); }
Assistance TextBatchEngine::assistance() const { return impl_->mode; }

}  // namespace assistgen

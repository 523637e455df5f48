// BatchEngine<Target, Source>: many sequences decoded together, with
// continuous batching and assisted generation with ragged acceptance. Each
// round:
//
//   1. waiting sequences join while the batch has room and the
//      KvCacheManager has memory for their caches (a full manager makes them
//      wait, in order, until a running sequence leaves);
//   2. every active sequence proposes its own candidates (its own K; a draft
//      model's steps for all sequences run as one batched draft forward per
//      step, prompt lookup, self-speculation and other sources per sequence);
//   3. ONE target forward_batch verifies all of them: request r is
//      [last, d_1..d_k] of sequence r, with k_r + 1 logit rows (a sequence's
//      prompt but its last token is fed when it joins, in a call of its own
//      with no logits: detail::prefill_prompt; self-speculation,
//      DraftsOnTargetCache: the draft's partial K/V rows are cut first and
//      recomputed in this call; a sequence alone verifies through its
//      source, reusing them);
//   4. each sequence accepts its own prefix (ragged), rolls back its own
//      caches, emits through its own callback and leaves when done.
//
// Exactness: a sequence's per-round logic is detail::AssistedSequence, the
// same code AssistedDecoder runs, with its own GenerationConfig, processors
// and seeded Rng; the backend's batched forward gives a token the same logits
// bits whatever else is in the call (batch invariance, backend.hpp). So a
// sequence's output, greedy or sampled, is bit-identical to running it alone
// with AssistedDecoder (SpeculativeDecoder) over the same source, or with
// AutoregressiveDecoder for NoCandidates, whatever shares its rounds and
// whenever they join or leave (tests/integration/test_batch_engine.cpp).
//
// Threads: submit(), cancel(), take_finished() and the counters may be
// called from any thread while one thread drives step() (a server's request
// threads and its decoding thread); callbacks run on the stepping thread.
// Errors are per sequence (Finished::error): a bad submission throws from
// submit() and queues nothing; a callback that throws, a model call that
// fails or caches that can never fit end the sequences concerned only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/detail/assisted_sequence.hpp"
#include "assistgen/detail/generation_setup.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/kv_cache_manager.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// The candidate source of plain decoding: proposes nothing, so each round
/// is one target row and one token (AutoregressiveDecoder's output).
struct NoCandidates {
  /// CandidateSource::start: nothing to set up.
  void start(std::size_t, std::size_t, CandidateContext&) {}
  /// CandidateSource::limit: 0, no candidates ever.
  std::size_t limit(const CandidateContext&) const { return 0; }
  /// CandidateSource::propose: proposes nothing.
  std::size_t propose(std::vector<Token>&, std::size_t, std::size_t, CandidateContext&) {
    return 0;
  }
  /// CandidateSource::q_row: no draft distribution.
  std::span<const float> q_row(std::size_t) const { return {}; }
  /// CandidateSource::discard: nothing to discard.
  void discard(std::size_t) {}
  /// CandidateSource::learn: nothing to learn.
  void learn(std::size_t, std::size_t, CandidateContext&) {}
  /// CandidateSource::cut: nothing to cut.
  void cut(std::size_t) {}
  /// CandidateSource::finish: no stats of its own.
  void finish(GenerationStats&) const {}
};

/// A candidate source whose draft-model steps BatchEngine can run for many
/// sequences in one forward (DraftModelCandidates): the stepwise proposal
/// (begin_steps / step_input / take_step / count_call), the draft model and
/// a cache the engine may supply from its KvCacheManager (use_cache).
template <class S>
concept SteppedDraftSource = CandidateSource<S> &&
    requires(S& s, const S& cs, std::vector<Token>& work, std::size_t n, bool b,
             std::span<float> row, LogitsProcessorChain& chain, const DraftLengthPolicy& policy,
             std::span<const Token> eos, Rng& rng) {
  typename S::Cache;
  requires CausalLM<std::remove_cvref_t<decltype(cs.model())>>;
  { s.begin_steps(work, n, n, b) } -> std::convertible_to<bool>;
  { cs.step_input(work) } -> std::convertible_to<std::span<const Token>>;
  { s.take_step(row, work, chain, b, policy, eos, rng) } -> std::convertible_to<bool>;
  s.count_call(0.0);
  s.cache();
};

/// A candidate source that drafts on the sequence's own target cache
/// (self-speculation, EarlyExitCandidates): BatchEngine lends it the cache
/// (bind_target_cache) before start(). A sequence alone in its round is
/// verified by the source (verify, which may reuse the draft's rows); in a
/// batch, prepare_batched_verify() first cuts the cache back to the slots
/// holding every layer, so that the round's one target call verifies it
/// with the others (the same logits bits: batch invariance).
template <class S, class Cache>
concept DraftsOnTargetCache = CandidateSource<S> &&
    requires(S& s, Cache& cache, std::span<const Token> seq, std::size_t n, Logits& out) {
  s.bind_target_cache(cache);
  s.verify(seq, n, out);
  s.prepare_batched_verify();
};

/// A candidate source whose draft cache grows while it runs (a draft with
/// another tokenizer, DifferentTokenizerCandidates): BatchEngine hands it
/// caches from its KvCacheManager (use_cache_provider), so that they count
/// against the manager's byte bound like the target's.
template <class S>
concept ProvidedDraftCache = CandidateSource<S> &&
    requires(S& s, const S& cs, typename S::CacheProvider provide, std::size_t n) {
  requires CausalLM<std::remove_cvref_t<decltype(cs.model())>>;
  s.use_cache_provider(provide, n);
};

/// How a BatchEngine batches.
struct BatchOptions {
  /// Sequences verified together in one round (at least 1).
  std::size_t max_batch = 8;
  /// Prefixes the errors the engine throws.
  std::string name = "BatchEngine";
};

/// Counters of a BatchEngine since it was made.
struct BatchStats {
  std::size_t rounds = 0;           ///< step() calls that ran a round
  std::size_t sequence_rounds = 0;  ///< sum over rounds of the sequences in them
  std::size_t target_calls = 0;     ///< target forward calls (one per round)
  std::size_t draft_calls = 0;      ///< batched draft forward calls
  std::size_t new_tokens = 0;       ///< tokens emitted
  std::size_t drafted = 0;          ///< candidates verified
  std::size_t accepted = 0;         ///< candidates accepted
  std::size_t finished = 0;         ///< sequences that left (done, cancelled or failed)
  std::size_t max_batch_seen = 0;   ///< the largest round
  double target_seconds = 0.0;      ///< inside target forward calls
  /// Inside batched draft forward calls, and in the per-sequence proposals
  /// of sources that run a model in them (self-speculation, a draft with
  /// another tokenizer).
  double draft_seconds = 0.0;
  double step_seconds = 0.0;        ///< inside step() in all

  /// Mean sequences per round; 0 before any round.
  double mean_batch() const { return rounds ? double(sequence_rounds) / double(rounds) : 0.0; }
  /// accepted / drafted; 0 when nothing was drafted.
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  /// Time in step() outside the models' forward calls: admission,
  /// proposals without a model (prompt lookup), processors, sampling,
  /// acceptance, callbacks and bookkeeping.
  double overhead_seconds() const {
    const double t = step_seconds - target_seconds - draft_seconds;
    return t > 0.0 ? t : 0.0;
  }
};

/// Continuous batching of assisted (or, with NoCandidates, plain) generation
/// of `Target`, each sequence with its own candidate source of type
/// `Source`. Holds a reference to the target (and the sources hold theirs to
/// their draft models): they must outlive the engine. The KV caches come
/// from a KvCacheManager, the caller's (shared, bounded) or the engine's own
/// (unbounded). Not copyable.
template <CausalLM Target, CandidateSource Source = NoCandidates>
class BatchEngine {
 public:
  /// Caller-visible id of a submitted sequence (0, 1, 2, ... in submission order).
  using SequenceId = std::uint64_t;
  using TargetCache = typename Target::Cache;  ///< the target's cache type

  /// A sequence that left the engine.
  struct Finished {
    SequenceId id = 0;             ///< as submit() returned it
    GenerationResult result = {};  ///< tokens, stats and stop reason (partial when `error` is set)
    /// Set when this sequence failed (its callback threw, a model call of its
    /// round failed, or its caches can never fit the manager's bound); the
    /// others go on.
    std::exception_ptr error = {};
    bool cancelled = false;  ///< cancel() ended it (stop_reason: callback)
  };

  /// An engine over `target` batching up to options.max_batch sequences per
  /// round, with caches from `caches` (not owned, must outlive the engine;
  /// null: an unbounded manager of its own). Throws InvalidArgument when
  /// max_batch is 0.
  explicit BatchEngine(const Target& target, BatchOptions options = {},
                       KvCacheManager* caches = nullptr)
      : target_(&target), options_(std::move(options)), caches_(caches) {
    if (options_.max_batch == 0)
      throw InvalidArgument(options_.name + ": BatchOptions::max_batch must be at least 1");
    if (!caches_) {
      own_caches_ = std::make_unique<KvCacheManager>();
      caches_ = own_caches_.get();
    }
  }
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  /// Queues a sequence continuing `prompt` with `cfg` (its own seed,
  /// processors, K, stopping rules) and candidates from `source`;
  /// `on_token` receives each of its tokens as soon as it is accepted
  /// (return false to stop it). Checks everything a generate() call would
  /// (prompt tokens, options, capacity) and throws, queuing nothing, when
  /// they are bad. Returns the sequence's id.
  SequenceId submit(std::span<const Token> prompt, GenerationConfig cfg, Source source,
                    TokenCallback on_token = {}) {
    auto seq = std::make_unique<Seq>(target_vocab(), std::move(cfg), options_.name + "::submit",
                                     std::move(source));
    seq->prompt.assign(prompt.begin(), prompt.end());
    seq->plan = detail::plan_generation(options_.name + "::submit", prompt, target_vocab(),
                                        seq->state.config(), limits_of(seq->state.source()));
    seq->on_token = std::move(on_token);
    std::lock_guard lock(mutex_);
    seq->id = next_id_++;
    const SequenceId id = seq->id;
    waiting_.push_back(std::move(seq));
    return id;
  }

  /// As above for sources made from nothing (NoCandidates).
  SequenceId submit(std::span<const Token> prompt, GenerationConfig cfg,
                    TokenCallback on_token = {}) requires std::default_initializable<Source> {
    return submit(prompt, std::move(cfg), Source{}, std::move(on_token));
  }

  /// Ends sequence `id`: a waiting one leaves at once, a running one at the
  /// start of the next step() (keeping the tokens it emitted); either way
  /// take_finished() then returns it with `cancelled` set. Returns false
  /// when no such sequence is waiting or running.
  bool cancel(SequenceId id) {
    std::lock_guard lock(mutex_);
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if ((*it)->id != id) continue;
      Finished f;
      f.id = id;
      f.cancelled = true;
      f.result.stop_reason = StopReason::callback;
      f.result.stats.prompt_tokens = (*it)->prompt.size();
      finished_.push_back(std::move(f));
      waiting_.erase(it);
      ++stats_.finished;
      return true;
    }
    if (std::find(running_ids_.begin(), running_ids_.end(), id) == running_ids_.end()) return false;
    if (std::find(cancel_.begin(), cancel_.end(), id) == cancel_.end()) cancel_.push_back(id);
    return true;
  }

  /// Runs one round: retires cancelled sequences, admits waiting ones, then
  /// proposes, verifies (one target call), accepts and emits for every
  /// running sequence, and retires those that are done. Returns whether any
  /// sequence is still running or waiting. Errors do not escape: a callback
  /// that throws ends its sequence alone, a model call that throws ends the
  /// sequences of that round; each gets the exception in Finished::error.
  bool step() {
    const auto t_step = Clock::now();
    retire_cancelled();
    admit();
    if (!active_.empty()) {
      try {
        round();
      } catch (...) {
        // A model call failed (the backend left every cache at its size, but
        // the sequences are mid-round): every running sequence ends with the
        // error, the waiting ones go on.
        const std::exception_ptr error = std::current_exception();
        while (!active_.empty()) {
          std::unique_ptr<Seq> s = std::move(active_.back());
          active_.pop_back();
          s->error = error;
          s->state.stop(StopReason::callback);
          finish(std::move(s), false);
        }
      }
      ++run_stats_.rounds;
      run_stats_.sequence_rounds += active_.size();
      run_stats_.max_batch_seen = std::max(run_stats_.max_batch_seen, active_.size());
      retire_done();
    }
    run_stats_.step_seconds += seconds_since(t_step);
    std::lock_guard lock(mutex_);
    const std::size_t finished = stats_.finished;
    stats_ = run_stats_;
    stats_.finished = finished;
    return !active_.empty() || !waiting_.empty();
  }

  /// step() until every submitted sequence has finished.
  void run() {
    while (step()) {
    }
  }

  /// The sequences that left since the last call, in the order they left.
  std::vector<Finished> take_finished() {
    std::lock_guard lock(mutex_);
    std::vector<Finished> out;
    out.swap(finished_);
    return out;
  }

  /// Sequences running (joined, not yet finished).
  std::size_t running() const {
    std::lock_guard lock(mutex_);
    return running_ids_.size();
  }
  /// Sequences submitted and waiting to join.
  std::size_t waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_.size();
  }
  /// Counters since the engine was made.
  BatchStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  /// The options in effect.
  const BatchOptions& options() const { return options_; }
  /// The cache manager in use.
  KvCacheManager& cache_manager() { return *caches_; }
  /// The target model (not owned).
  const Target& target() const { return *target_; }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  struct Seq {
    Seq(std::size_t vocab, GenerationConfig cfg, std::string name, Source source)
        : state(std::move(cfg), vocab, std::move(name),
                [&](const GenerationConfig&) { return std::move(source); }) {}
    SequenceId id = 0;
    detail::AssistedSequence<Source> state;
    std::vector<Token> prompt;
    detail::GenerationPlan plan;
    TokenCallback on_token;
    TargetCache* cache = nullptr;  // from the manager while running
    bool draft_cache = false;      // a draft cache was acquired from the manager
    bool draft_slot = false;       // which of its two keys it has (ProvidedDraftCache)
    Clock::time_point started;
    std::exception_ptr error;
    bool going = false;         // a stepped draft proposal is still running
    std::size_t first_row = 0;  // the sequence's first row in the round's logits
  };

  std::size_t target_vocab() const { return static_cast<std::size_t>(target_->vocab_size()); }

  PositionLimits limits_of(const Source& s) const {
    if constexpr (requires { s.limits(PositionLimits{}); })
      return s.limits(position_limits(*target_));
    else
      return position_limits(*target_);
  }

  // Manager keys: the target and a draft model may be the same object, so
  // their caches of one sequence take distinct ids; a growing draft cache
  // (ProvidedDraftCache) alternates between two, the new one acquired
  // while the old is held.
  static KvCacheManager::SequenceId target_key(SequenceId id) { return 3 * id; }
  static KvCacheManager::SequenceId draft_key(SequenceId id, bool slot = false) {
    return 3 * id + 1 + (slot ? 1 : 0);
  }

  void release_caches(Seq& s) {
    if (s.cache) caches_->release(*target_, target_key(s.id));
    s.cache = nullptr;
    if constexpr (SteppedDraftSource<Source> || ProvidedDraftCache<Source>) {
      if (s.draft_cache) caches_->release(s.state.source().model(), draft_key(s.id, s.draft_slot));
      s.draft_cache = false;
    }
  }

  // Takes caches for `s` from the manager; false (nothing held) when they
  // do not fit now.
  bool acquire_caches(Seq& s) {
    try {
      s.cache = &caches_->acquire(*target_, target_key(s.id), s.plan.capacity);
      if constexpr (SteppedDraftSource<Source>) {
        auto& dc = caches_->acquire(s.state.source().model(), draft_key(s.id), s.plan.capacity);
        s.draft_cache = true;
        s.state.source().use_cache(dc);
      } else if constexpr (ProvidedDraftCache<Source>) {
        Seq* const sp = &s;
        s.state.source().use_cache_provider(
            [this, sp](std::size_t capacity) -> auto& {
              const auto& model = sp->state.source().model();
              const bool slot = sp->draft_cache ? !sp->draft_slot : false;
              auto& c = caches_->acquire(model, draft_key(sp->id, slot), capacity);
              if (sp->draft_cache) caches_->release(model, draft_key(sp->id, sp->draft_slot));
              sp->draft_slot = slot;
              sp->draft_cache = true;
              return c;
            },
            s.plan.capacity);
      }
      return true;
    } catch (const CapacityError&) {
      release_caches(s);
      if (!active_.empty()) return false;
      throw;  // nothing will leave to make room: this sequence can never run
    }
  }

  void admit() {
    while (active_.size() < options_.max_batch) {
      std::unique_ptr<Seq> s;
      {
        std::lock_guard lock(mutex_);
        if (waiting_.empty()) return;
        s = std::move(waiting_.front());
        waiting_.pop_front();
        running_ids_.push_back(s->id);
      }
      bool ok = false;
      try {
        ok = acquire_caches(*s);
        if (ok) {
          if constexpr (DraftsOnTargetCache<Source, TargetCache>)
            s->state.source().bind_target_cache(*s->cache);
          s->started = Clock::now();
          s->state.begin(s->prompt, s->plan, 0);
          if (!s->state.done()) {
            // The prompt but its last token, alone (detail::prefill_prompt,
            // as AssistedDecoder and AutoregressiveDecoder prefill it): a
            // backend's prefill path never sees the sequence's batch mates.
            const auto t0 = Clock::now();
            detail::prefill_prompt(*target_, s->prompt, *s->cache, logits_, "target");
            const double dt = seconds_since(t0);
            run_stats_.target_seconds += dt;
            s->state.stats().target_seconds += dt;
          }
        }
      } catch (...) {
        release_caches(*s);
        s->error = std::current_exception();
        finish(std::move(s), false);
        continue;
      }
      if (!ok) {  // waits, first in line, for a running sequence to leave
        std::lock_guard lock(mutex_);
        running_ids_.pop_back();
        waiting_.push_front(std::move(s));
        return;
      }
      if (s->state.done()) {  // nothing to generate (max_new_tokens 0)
        finish(std::move(s), false);
        continue;
      }
      active_.push_back(std::move(s));
    }
  }

  void round() {
    propose_all();
    // A self-speculative sequence alone verifies through its source (which
    // may reuse the draft's layers); in a batch, through the one call below.
    bool alone = false;
    if constexpr (DraftsOnTargetCache<Source, TargetCache>) {
      alone = active_.size() == 1;
      if (!alone)
        for (auto& s : active_) s->state.source().prepare_batched_verify();
    }
    // One target call: request r = sequence r's unseen tokens, k_r + 1 rows.
    requests_.clear();
    target_caches_.clear();
    std::size_t rows = 0;
    for (auto& s : active_) {
      const std::size_t outputs = s->state.target_outputs();
      requests_.push_back({s->state.target_input(s->cache->size()),
                           s->state.target_parent(s->cache->size()), outputs});
      target_caches_.push_back(s->cache);
      s->first_row = rows;
      rows += outputs;
    }
    const auto t0 = Clock::now();
    if constexpr (DraftsOnTargetCache<Source, TargetCache>) {
      if (alone) {
        auto& s = *active_.front();
        s.state.source().verify(s.state.sequence(), rows, logits_);
      }
    }
    if (!alone)
      forward_batch(*target_, std::span<const ForwardRequest>(requests_),
                    std::span<TargetCache* const>(target_caches_), logits_);
    const double dt = seconds_since(t0);
    if (logits_.rows() != rows || logits_.cols() < target_vocab())
      throw Error(options_.name + ": the target's batched forward returned logits of shape [" +
                  std::to_string(logits_.rows()) + ", " + std::to_string(logits_.cols()) +
                  "] for " + std::to_string(rows) + " output rows");
    run_stats_.target_seconds += dt;
    ++run_stats_.target_calls;
    for (auto& s : active_) {
      GenerationStats& st = s->state.stats();
      st.target_seconds += dt;
      ++st.target_calls;
      const std::size_t before = s->state.result().tokens.size();
      try {
        s->state.finish_round([&](std::size_t j) { return logits_.row(s->first_row + j); },
                              *s->cache, s->on_token);
      } catch (...) {  // the sequence's callback threw: it alone ends
        s->error = std::current_exception();
        s->state.stop(StopReason::callback);
      }
      run_stats_.new_tokens += s->state.result().tokens.size() - before;
      run_stats_.drafted += s->state.drafted();
      run_stats_.accepted += s->state.accepted();
    }
  }

  void propose_all() {
    if constexpr (SteppedDraftSource<Source>) {
      // Draft steps of every sequence with the same draft model in one call.
      for (auto& s : active_) {
        const std::size_t limit = s->state.plan_proposal();
        s->going = s->state.source().begin_steps(s->state.work(), s->state.round_start(), limit,
                                                 s->state.config().do_sample);
      }
      using DraftModel = std::remove_cvref_t<decltype(active_.front()->state.source().model())>;
      using DraftCache = typename Source::Cache;
      for (;;) {
        const DraftModel* model = nullptr;  // sequences may use different draft models
        for (auto& s : active_)
          if (s->going) {
            model = &s->state.source().model();
            break;
          }
        if (!model) break;
        const DraftModel& draft = *model;
        requests_.clear();
        draft_caches_.clear();
        batch_.clear();
        for (auto& s : active_) {
          if (!s->going || &s->state.source().model() != model) continue;
          requests_.push_back({s->state.source().step_input(s->state.work()), {}, 1});
          draft_caches_.push_back(&s->state.source().cache());
          batch_.push_back(s.get());
        }
        const auto t0 = Clock::now();
        forward_batch(draft, std::span<const ForwardRequest>(requests_),
                      std::span<DraftCache* const>(draft_caches_), draft_logits_);
        const double dt = seconds_since(t0);
        if (draft_logits_.rows() != batch_.size())
          throw Error(options_.name + ": the draft's batched forward returned " +
                      std::to_string(draft_logits_.rows()) + " rows for " +
                      std::to_string(batch_.size()) + " requests");
        run_stats_.draft_seconds += dt;
        ++run_stats_.draft_calls;
        for (std::size_t r = 0; r < batch_.size(); ++r) {
          Seq& s = *batch_[r];
          auto& src = s.state.source();
          src.count_call(dt);
          s.going = src.take_step(draft_logits_.row(r), s.state.work(), s.state.chain(),
                                  s.state.config().do_sample, s.state.draft_length(), s.state.eos(),
                                  s.state.rng());
        }
      }
      for (auto& s : active_)
        s->state.end_proposal(s->state.work().size() - s->state.round_start());
    } else {
      if constexpr (DraftsOnTargetCache<Source, TargetCache> || ProvidedDraftCache<Source>) {
        // These sources run a model inside propose(), one sequence at a time.
        const auto t0 = Clock::now();
        for (auto& s : active_) s->state.propose();
        run_stats_.draft_seconds += seconds_since(t0);
      } else {
        for (auto& s : active_) s->state.propose();
      }
    }
  }

  void finish(std::unique_ptr<Seq> s, bool cancelled) {
    Finished f;
    f.id = s->id;
    f.error = s->error;
    f.cancelled = cancelled;
    f.result = s->state.finish();
    f.result.stats.total_seconds = seconds_since(s->started);
    release_caches(*s);
    std::lock_guard lock(mutex_);
    running_ids_.erase(std::find(running_ids_.begin(), running_ids_.end(), s->id));
    finished_.push_back(std::move(f));
    ++stats_.finished;
  }

  void retire_done() {
    for (std::size_t i = 0; i < active_.size();) {
      if (active_[i]->state.done()) {
        std::unique_ptr<Seq> s = std::move(active_[i]);
        active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
        finish(std::move(s), false);
      } else {
        ++i;
      }
    }
  }

  void retire_cancelled() {
    std::vector<SequenceId> ids;
    {
      std::lock_guard lock(mutex_);
      ids.swap(cancel_);
    }
    for (const SequenceId id : ids) {
      auto it =
          std::find_if(active_.begin(), active_.end(), [&](const auto& s) { return s->id == id; });
      if (it == active_.end()) continue;
      std::unique_ptr<Seq> s = std::move(*it);
      active_.erase(it);
      s->state.stop(StopReason::callback);
      finish(std::move(s), true);
    }
  }

  const Target* target_;
  BatchOptions options_;
  KvCacheManager* caches_;
  std::unique_ptr<KvCacheManager> own_caches_;
  std::vector<std::unique_ptr<Seq>> active_;  // running, in join order (the stepping thread's)
  // Scratch reused every round.
  std::vector<ForwardRequest> requests_;
  std::vector<TargetCache*> target_caches_;
  std::vector<typename detail::SourceCache<Source>::type*> draft_caches_;
  std::vector<Seq*> batch_;
  Logits logits_, draft_logits_;
  // Shared with the submitting threads (mutex_).
  mutable std::mutex mutex_;
  std::deque<std::unique_ptr<Seq>> waiting_;
  std::vector<SequenceId> running_ids_;
  std::vector<SequenceId> cancel_;
  std::vector<Finished> finished_;
  BatchStats stats_;      // published at the end of every step()
  BatchStats run_stats_;  // the stepping thread's
  SequenceId next_id_ = 0;
};

}  // namespace assistgen

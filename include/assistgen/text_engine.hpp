// TextBatchEngine: the text API's continuous batching (Model::generate_batch)
// kept open, for programs that receive requests over time, such as a server
// (assistgen::Server, server.hpp). Any thread submits a prompt with its own
// options and text callback and may cancel it; one thread calls step(),
// which runs one round (one target pass for every running sequence) and
// calls the callbacks; finished sequences are collected with take_finished().
//
//   assistgen::TextBatchEngine engine(target, &draft, {.max_batch = 8});
//   auto id = engine.submit("And God said", {.max_new_tokens = 32},
//                           [](std::string_view piece) { std::cout << piece; return true; });
//   while (engine.step()) {}
//   for (auto& f : engine.take_finished()) use(f.id, f.result);
//
// Each sequence is prepared exactly as Model::generate prepares it, and its
// text comes from the same streaming detokenizer with stop strings, so its
// result is exactly what generate() gives it alone (same tokens, same text),
// whatever shares its rounds (BatchEngine's exactness, batch_engine.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string_view>
#include <vector>

#include "assistgen/batch_engine.hpp"
#include "assistgen/generate.hpp"

namespace assistgen {

/// Continuous batching of text generations of one target Model, assisted by
/// one assistant Model (same ids: its draft steps batched; another
/// tokenizer: universal assisted generation, greedy only) or by nothing
/// (then each request may ask for prompt lookup, or for self-speculation
/// with assistant_early_exit: its sequence drafts with the target's first
/// layers, and is verified in the round's one target call with the others). Holds references to the
/// models: they must outlive the engine. submit(), cancel(),
/// take_finished() and the counters may be called from any thread while
/// one thread drives step(); text callbacks run on the stepping thread.
class TextBatchEngine {
 public:
  /// Caller-visible id of a submitted sequence (0, 1, 2, ... in submission order).
  using SequenceId = std::uint64_t;

  /// A sequence that left the engine.
  struct Finished {
    SequenceId id = 0;  ///< as submit() returned it
    TextResult result;  ///< text, tokens, stats (partial when `error` is set or cancelled)
    std::exception_ptr
        error;               ///< set when this sequence failed on its own (e.g. its callback threw)
    bool cancelled = false;  ///< cancel() ended it
  };

  /// An engine over `target` (and `assistant`, may be null) batching
  /// `batch.max_batch` sequences per round with caches bounded by
  /// `batch.max_cache_bytes` (0: unbounded). InvalidArgument when max_batch is 0.
  explicit TextBatchEngine(const Model& target, const Model* assistant = nullptr,
                           const BatchGenerateOptions& batch = {});
  ~TextBatchEngine();
  TextBatchEngine(const TextBatchEngine&) = delete;
  TextBatchEngine& operator=(const TextBatchEngine&) = delete;

  /// Queues the continuation of `prompt` (token ids of the target's
  /// tokenizer; empty: the BOS fallback of generate()) with `options`
  /// (overrides of the target's defaults, as in generate()); `on_text`
  /// streams its text (return false to stop it). Throws what generate()
  /// throws for bad options or a prompt too long, queuing nothing.
  SequenceId submit(std::vector<Token> prompt, const GenerateOptions& options = {},
                    TextCallback on_text = {});
  /// As above for a text prompt, encoded as generate() encodes it.
  SequenceId submit(std::string_view prompt, const GenerateOptions& options = {},
                    TextCallback on_text = {});

  /// Ends sequence `id` (BatchEngine::cancel): a waiting one at once, a
  /// running one at the start of the next step(); its caches are released
  /// then and take_finished() returns it with `cancelled` set. False when no
  /// such sequence is waiting or running.
  bool cancel(SequenceId id);

  /// Runs one round (BatchEngine::step). Returns whether any sequence is
  /// still running or waiting. A model error is rethrown.
  bool step();
  /// step() until every submitted sequence has finished.
  void run();

  /// The sequences that left since the last call, in the order they left.
  std::vector<Finished> take_finished();

  std::size_t running() const;  ///< sequences running
  std::size_t waiting() const;  ///< sequences submitted, waiting to join
  BatchStats stats() const;     ///< the engine's counters since it was made
  /// How sequences are assisted: draft, universal, or none (a request may
  /// still ask for prompt_lookup; its TextResult::assistance says so).
  Assistance assistance() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace assistgen

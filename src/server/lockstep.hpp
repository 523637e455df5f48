// Private to the server: the messages that keep the other ranks of a split
// target (ServerOptions::ranks) in step with rank 0. Rank 0 alone receives
// requests; every call it makes to its TextBatchEngine that changes which
// sequences run (a submission, a cancellation) is written to a Journal, and
// before each round the journal goes to every rank, which replays it on its
// own engine and then runs the same round. The engine is deterministic
// given its calls (the same admissions, drafts and acceptances), so every
// rank's target calls match: the collectives of the split forward pass.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>

#include "assistgen/generate.hpp"
#include "assistgen/tensor_parallel.hpp"
#include "assistgen/text_engine.hpp"

namespace assistgen::server {

/// Rank 0's record of its engine calls since the last round.
class Journal {
 public:
  /// engine.submit(prompt, options) returned `id`.
  void submitted(TextBatchEngine::SequenceId id, std::span<const Token> prompt,
                 const GenerateOptions& options);
  /// engine.cancel(id) returned true.
  void cancelled(TextBatchEngine::SequenceId id);
  /// Rank 0: sends the record to every rank (the next round follows; with
  /// `quit`, none: the other ranks stop) and starts a new one.
  void send(RankGroup& ranks, bool quit);

 private:
  nlohmann::json calls_ = nlohmann::json::array();
};

/// Another rank: waits for rank 0's next message and replays its calls on
/// `engine`. False when rank 0 stopped (no round follows). Throws Error
/// when a replayed submission does not get rank 0's id (the ranks left
/// step: a bug, or ranks with different models or options).
bool replay_round(RankGroup& ranks, TextBatchEngine& engine);

/// The options as a JSON object of the fields set, and back (exactly: the
/// floats as doubles).
nlohmann::json encode_options(const GenerateOptions& options);
GenerateOptions decode_options(const nlohmann::json& fields);

}  // namespace assistgen::server

// Private to the server: the lockstep messages of a split target (lockstep.hpp).
// A message is a length (8 bytes, sent by await_broadcast, so that an idle
// server's other ranks wait without spinning) and, when the length is not 0,
// the calls as CBOR. The length kQuit means rank 0 stopped.
#include "lockstep.hpp"

#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "assistgen/error.hpp"

namespace assistgen::server {

namespace {

using nlohmann::json;

constexpr std::uint64_t kQuit = std::numeric_limits<std::uint64_t>::max();

}  // namespace

json encode_options(const GenerateOptions& options) {
  json j = json::object();
  GenerateOptions::for_each_field(
      [&](const char* name, const auto& field) {
        if (!field) return;
        using T = std::remove_cvref_t<decltype(*field)>;
        if constexpr (std::is_enum_v<T>)
          j[name] = static_cast<std::underlying_type_t<T>>(*field);
        else
          j[name] = *field;
      },
      options);
  return j;
}

GenerateOptions decode_options(const json& fields) {
  GenerateOptions o;
  GenerateOptions::for_each_field(
      [&](const char* name, auto& field) {
        const auto it = fields.find(name);
        if (it == fields.end()) return;
        using T = typename std::remove_cvref_t<decltype(field)>::value_type;
        if constexpr (std::is_enum_v<T>)
          field = static_cast<T>(it->template get<std::underlying_type_t<T>>());
        else
          field = it->template get<T>();
      },
      o);
  return o;
}

void Journal::submitted(TextBatchEngine::SequenceId id, std::span<const Token> prompt,
                        const GenerateOptions& options) {
  calls_.push_back({{"submit", id},
                    {"prompt", std::vector<Token>(prompt.begin(), prompt.end())},
                    {"options", encode_options(options)}});
}

void Journal::cancelled(TextBatchEngine::SequenceId id) { calls_.push_back({{"cancel", id}}); }

void Journal::send(RankGroup& ranks, bool quit) {
  std::vector<std::uint8_t> bytes;
  if (!quit && !calls_.empty()) bytes = json::to_cbor(calls_);
  std::uint64_t length = quit ? kQuit : bytes.size();
  ranks.await_broadcast(&length, sizeof length, 0);
  if (!bytes.empty()) ranks.broadcast(bytes.data(), bytes.size(), 0);
  calls_ = json::array();
}

bool replay_round(RankGroup& ranks, TextBatchEngine& engine) {
  std::uint64_t length = 0;
  ranks.await_broadcast(&length, sizeof length, 0);
  if (length == kQuit) return false;
  if (length == 0) return true;
  std::vector<std::uint8_t> bytes(length);
  ranks.broadcast(bytes.data(), bytes.size(), 0);
  for (const json& call : json::from_cbor(bytes)) {
    if (call.contains("cancel")) {
      const auto id = call["cancel"].get<TextBatchEngine::SequenceId>();
      if (!engine.cancel(id))
        throw Error("Server: rank " + std::to_string(ranks.rank()) +
                    " left step with rank 0: request " + std::to_string(id) +
                    " was cancelled there but is not running here");
      continue;
    }
    const auto id = call["submit"].get<TextBatchEngine::SequenceId>();
    // A text callback as rank 0's (which never stops a sequence itself in
    // lockstep): the engine runs the same code on every rank.
    const auto got = engine.submit(call["prompt"].get<std::vector<Token>>(),
                                   decode_options(call["options"]),
                                   [](std::string_view) { return true; });
    if (got != id)
      throw Error("Server: rank " + std::to_string(ranks.rank()) +
                  " left step with rank 0: its engine gave request " + std::to_string(id) +
                  " the id " + std::to_string(got) +
                  " (the ranks must load the same models with the same options)");
  }
  return true;
}

}  // namespace assistgen::server

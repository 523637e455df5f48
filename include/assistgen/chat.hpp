// ChatSession: a multi-turn conversation with a chat model that keeps the KV
// caches of the target (and of the draft) between turns, so that a new turn
// prefills only what it adds. Every turn re-renders the whole conversation
// with the model's chat template and encodes it (ChatTemplate::encode); the
// decoder keeps the longest common token prefix of that prompt with what its
// caches hold (the last turn's prompt and reply), rolls the caches back to it
// and feeds the rest. Rendering the whole conversation, rather than appending
// text, keeps the prompt exactly what the template makes of it (templates
// that rewrite earlier turns, e.g. drop a reasoning block, only shorten the
// reused prefix). The replies are those Model::chat gives for the same
// conversation: greedy, token for token (the kernels are batch-invariant).
//
//   const Model target = load_model(dir).with_chat_template(ChatTemplate::load(dir));
//   ChatSession chat(target, {.system = "You are terse."});
//   chat.send("Hello", [](std::string_view piece) { std::cout << piece; return true; });
//   chat.send("And then?");  // prefills only the new user turn
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/chat_template.hpp"
#include "assistgen/generate.hpp"

namespace assistgen {

/// Options of a ChatSession, meant for designated initialisers.
struct ChatSessionOptions {
  /// Generation options of every turn (stop strings included), as for
  /// Model::chat. cache_capacity, when set, is the context (see `context`).
  GenerateOptions generate = {};
  /// The system message the conversation starts with (again after reset());
  /// empty: none.
  std::string system = {};
  /// Rendering options (tools, extra variables, parse_special_in_messages);
  /// add_generation_prompt is always on for the prompt of a reply.
  ChatRenderOptions render = {};
  /// Positions each KV cache is made for, once, for the whole conversation:
  /// a turn whose prompt is longer is a CapacityError (start over with
  /// reset()), and a reply that reaches it stops with StopReason::capacity.
  /// 0: generate.cache_capacity when set, else the target's
  /// max_position_embeddings (and the draft's) capped at 4096.
  std::size_t context = 0;
};

/// One conversation with a chat model, optionally assisted. Keeps copies of
/// the models (sharing their weights), the messages so far and the decoder
/// (with its caches) between turns. Not thread-safe: one session per
/// conversation; sessions on the same models may run on different threads.
class ChatSession {
 public:
  /// A session with `target` alone (or with prompt lookup when
  /// generate.prompt_lookup_num_tokens > 0). ConfigError when the target has
  /// no chat template (Model::with_chat_template).
  explicit ChatSession(const Model& target, ChatSessionOptions options = {});
  /// A session assisted by `assistant` (as Model::generate with an assistant).
  ChatSession(const Model& target, const Model& assistant, ChatSessionOptions options = {});
  ~ChatSession();
  /// Takes over the other session's conversation and caches.
  ChatSession(ChatSession&&) noexcept;
  /// Takes over the other session's conversation and caches.
  ChatSession& operator=(ChatSession&&) noexcept;
  ChatSession(const ChatSession&) = delete;
  ChatSession& operator=(const ChatSession&) = delete;

  /// Adds a user message and generates the reply (streamed to `on_text`),
  /// which is added to the conversation as an assistant message (its text:
  /// TextResult::text, cut before any stop string). When generation throws,
  /// the conversation is as it was before the call.
  TextResult send(std::string_view user_text, const TextCallback& on_text = {});
  /// Generates the assistant's reply to the conversation as it stands (e.g.
  /// after add()) and adds it.
  TextResult reply(const TextCallback& on_text = {});
  /// Appends a message without generating (e.g. a tool result, or a
  /// conversation restored from a file).
  void add(ChatMessage message);
  /// Starts the conversation over (the system message only). The caches are
  /// kept: the next turn still reuses the prefix they share with it.
  void reset();

  /// The conversation so far.
  const std::vector<ChatMessage>& messages() const;
  /// The token ids the next reply would start from (the conversation
  /// rendered with add_generation_prompt and encoded).
  std::vector<Token> prompt_tokens() const;
  /// Positions each cache is made for (ChatSessionOptions::context resolved).
  std::size_t context() const;
  /// The last turn's result (empty before the first).
  const std::optional<TextResult>& last() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace assistgen

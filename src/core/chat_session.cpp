// ChatSession (chat.hpp): the conversation, and the decoders that keep the
// caches between turns (session_decoders.hpp); Model::run_ids does the rest.
#include <algorithm>
#include <utility>

#include "assistgen/chat.hpp"
#include "assistgen/error.hpp"
#include "session_decoders.hpp"

namespace assistgen {

namespace {

constexpr std::size_t kDefaultContextCap = 4096;

std::size_t model_positions(const AnyModel& m) {
  const PositionLimits l = m.position_limits();
  return l.trained != 0 ? l.trained : l.hard;
}

}  // namespace

struct ChatSession::State {
  Model target;
  std::optional<Model> assistant;
  ChatSessionOptions options;
  GenerateOptions generate;  // options.generate with cache_capacity = context
  std::size_t context = 0;
  std::vector<ChatMessage> messages;
  detail::SessionDecoders decoders;
  std::optional<TextResult> last;

  State(const Model& t, const Model* a, ChatSessionOptions o) : target(t), options(std::move(o)) {
    if (a) assistant.emplace(*a);
    (void)target.chat_template();  // ConfigError now rather than at the first turn
    options.render.add_generation_prompt = true;
    context = options.context ? options.context : options.generate.cache_capacity.value_or(0);
    if (context == 0) {
      context = kDefaultContextCap;
      for (const AnyModel* m : {&target.backend(), a ? &a->backend() : nullptr})
        if (m && model_positions(*m) != 0) context = std::min(context, model_positions(*m));
    }
    generate = options.generate;
    generate.cache_capacity = context;
    start();
  }

  void start() {
    messages.clear();
    if (!options.system.empty()) messages.push_back({"system", options.system});
  }

  std::vector<Token> prompt() const {
    return ChatTemplate::encode(target.tokenizer(),
                                target.chat_template().render(messages, options.render));
  }
};

ChatSession::ChatSession(const Model& target, ChatSessionOptions options)
    : state_(std::make_unique<State>(target, nullptr, std::move(options))) {}
ChatSession::ChatSession(const Model& target, const Model& assistant, ChatSessionOptions options)
    : state_(std::make_unique<State>(target, &assistant, std::move(options))) {}
ChatSession::~ChatSession() = default;
ChatSession::ChatSession(ChatSession&&) noexcept = default;
ChatSession& ChatSession::operator=(ChatSession&&) noexcept = default;

TextResult ChatSession::send(std::string_view user_text, const TextCallback& on_text) {
  State& s = *state_;
  s.messages.push_back({"user", std::string(user_text)});
  try {
    return reply(on_text);
  } catch (...) {
    s.messages.pop_back();
    throw;
  }
}

TextResult ChatSession::reply(const TextCallback& on_text) {
  State& s = *state_;
  std::vector<Token> ids = s.prompt();
  if (ids.size() > s.context)
    throw CapacityError("ChatSession: the conversation encodes to " + std::to_string(ids.size()) +
                        " tokens, more than the context of " + std::to_string(s.context) +
                        " positions (ChatSessionOptions::context); start over with reset()");
  TextResult r = s.target.run_ids(std::move(ids), s.assistant ? &*s.assistant : nullptr, s.generate,
                                  on_text, &s.decoders);
  s.messages.push_back({"assistant", r.text});
  s.last = r;
  return r;
}

void ChatSession::add(ChatMessage message) { state_->messages.push_back(std::move(message)); }

void ChatSession::reset() {
  state_->start();
  state_->last.reset();
}

const std::vector<ChatMessage>& ChatSession::messages() const { return state_->messages; }
std::vector<Token> ChatSession::prompt_tokens() const { return state_->prompt(); }
std::size_t ChatSession::context() const { return state_->context; }
const std::optional<TextResult>& ChatSession::last() const { return state_->last; }

}  // namespace assistgen

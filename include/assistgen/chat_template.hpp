// Chat templates: the prompt format of an instruct/chat model, as the Jinja
// template in its tokenizer_config.json ("chat_template") or
// chat_template.jinja, rendered as Hugging Face's apply_chat_template does
// (the variables it passes: messages, add_generation_prompt, tools,
// bos_token, eos_token, unk_token, pad_token, plus any extra ones), and the
// rendered prompt turned into token ids with the special-token text of the
// template parsed as special tokens while the text of the messages is not
// (a user typing "<|im_end|>" gets those characters, not a turn boundary),
// unless asked.
//
// Model::chat (generate.hpp) and ChatSession (chat.hpp: the conversation and
// the KV caches kept between turns) build on it; see docs/chat_templates.md.
#pragma once

#include <assistgen/jinja.hpp>
#include <assistgen/tokenizer.hpp>
#include <assistgen/types.hpp>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace assistgen {

/// One message of a conversation: a role ("system", "user", "assistant",
/// "tool") and its text. Messages with tool calls or other fields are given
/// to ChatTemplate::render as jinja::Value objects instead.
struct ChatMessage {
  std::string role;     ///< "system", "user", "assistant", "tool", ...
  std::string content;  ///< the text of the message
};

/// Options of ChatTemplate::render, meant for designated initialisers.
struct ChatRenderOptions {
  /// End with the header of an assistant turn, so the model writes the reply.
  bool add_generation_prompt = true;
  /// Tool definitions (an array of JSON-schema objects, as in HF's `tools`);
  /// undefined: none. With tools, a template named "tool_use" is preferred.
  jinja::Value tools;
  /// Further template variables (an object), e.g. documents, date_string,
  /// enable_thinking; they override the ones above of the same name.
  jinja::Value extra;
  /// Parse special-token text inside message contents as special tokens too
  /// (Hugging Face's behaviour). Off: message text is user text, kept literal.
  bool parse_special_in_messages = false;
  /// Bounds and clock of the render.
  jinja::RenderOptions render;
};

/// A rendered prompt: the text, and where the messages' text lies in it.
struct ChatPrompt {
  std::string text;                ///< the prompt, exactly as the template renders it
  std::vector<ByteRange> literal;  ///< ranges of text whose special tokens are not parsed
};

/// A model's chat template. Immutable; render() may be called from any
/// number of threads. Copies share the parsed template.
class ChatTemplate {
 public:
  /// Loads the chat template of the model directory `dir`: chat_template.jinja
  /// when present, else tokenizer_config.json's "chat_template" (a string, or
  /// a list of {"name", "template"}: "default" is used, or "tool_use" when
  /// rendering with tools). Special-token strings (bos_token, eos_token,
  /// unk_token, pad_token) come from tokenizer_config.json. Throws
  /// ConfigError when the model has no chat template (say `--template FILE`),
  /// FormatError for a malformed file, jinja::TemplateError (line, column)
  /// for a template that does not parse.
  static ChatTemplate load(const std::filesystem::path& dir);
  /// Whether `dir` has a chat template (chat_template.jinja, or a
  /// "chat_template" in tokenizer_config.json).
  static bool available(const std::filesystem::path& dir);
  /// A template from its source text (e.g. a `--template FILE`), with the
  /// special-token strings of the model (empty: not defined). `origin` names
  /// it in errors.
  static ChatTemplate from_string(std::string_view source, std::string bos_token = {},
                                  std::string eos_token = {}, std::string origin = "chat template");
  /// As from_string(), taking the special-token strings from the
  /// tokenizer_config.json of `dir` (when it has one).
  static ChatTemplate from_string_for(std::string_view source, const std::filesystem::path& dir,
                                      std::string origin = "chat template");

  /// Renders `messages` (an array of message objects: role, content,
  /// optional tool_calls, name, ...). Throws jinja::TemplateRaised when the
  /// template rejects the conversation (its own message), jinja::TemplateError
  /// for other failures, InvalidArgument when messages is not an array.
  ChatPrompt render(const jinja::Value& messages, const ChatRenderOptions& options = {}) const;
  /// Renders plain role/content messages.
  ChatPrompt render(const std::vector<ChatMessage>& messages,
                    const ChatRenderOptions& options = {}) const;

  /// Token ids of a rendered prompt, as apply_chat_template(tokenize=True)
  /// makes them: no post-processor tokens added (the template writes its
  /// own BOS), special tokens in the template's text parsed, none in the
  /// prompt's literal ranges.
  static std::vector<Token> encode(const Tokenizer& tokenizer, const ChatPrompt& prompt);

  /// The bos_token string given to the template ("" when undefined).
  const std::string& bos_token() const { return bos_; }
  /// The eos_token string given to the template ("" when undefined).
  const std::string& eos_token() const { return eos_; }
  /// The names of the templates held ("default", and e.g. "tool_use").
  std::vector<std::string> names() const;

 private:
  ChatTemplate() = default;
  std::vector<std::pair<std::string, jinja::Template>> templates_;  // "default" first
  std::string bos_, eos_;
  jinja::Value specials_ = jinja::Value::object();  // special-token strings
};

}  // namespace assistgen

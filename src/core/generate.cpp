// The text API (generate.hpp): generation_config.json, option resolution and
// Model::generate over the decoders. Backend-independent: the models are
// AnyModels, so this file is part of the core library.
#include "assistgen/generate.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../io/json_file.hpp"
#include "../io/strict_json.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/error.hpp"
#include "assistgen/log.hpp"
#include "assistgen/self_speculative_decoder.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tree_decoder.hpp"
#include "assistgen/universal_decoder.hpp"
#include "session_decoders.hpp"
#include "text_run.hpp"

namespace assistgen {

namespace {

using nlohmann::json;

// Typed reads of generation_config.json fields; null or absent leaves the
// optional unset, anything of the wrong type is a ConfigError.
class FieldReader {
 public:
  FieldReader(const json& obj, std::string_view source) : obj_(obj), source_(source) {}

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw ConfigError(std::string(source_) + ": " + key + ": " + what);
  }
  std::int64_t integer(const json& v, const char* key) const {
    if (v.is_number_integer()) return v.get<std::int64_t>();
    // HF writes some counts as 5.0 after arithmetic; accept exact integers.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e15)
        return static_cast<std::int64_t>(d);
    }
    fail(key, "expected an integer, got " + io::detail::json_excerpt(v));
  }
  void size(const char* key, std::optional<std::size_t>& out, std::int64_t min = 0) const {
    if (const json* v = find(key)) {
      const std::int64_t x = integer(*v, key);
      if (x < min)
        fail(key, "must be at least " + std::to_string(min) + ", got " + std::to_string(x));
      out = static_cast<std::size_t>(x);
    }
  }
  void number(const char* key, std::optional<float>& out) const {
    if (const json* v = find(key)) {
      if (!v->is_number()) fail(key, "expected a number, got " + io::detail::json_excerpt(*v));
      const double d = v->get<double>();
      if (!std::isfinite(d)) fail(key, "must be finite");
      out = static_cast<float>(d);
    }
  }
  void boolean(const char* key, std::optional<bool>& out) const {
    if (const json* v = find(key)) {
      if (!v->is_boolean())
        fail(key, "expected true or false, got " + io::detail::json_excerpt(*v));
      out = v->get<bool>();
    }
  }
  Token token(const json& v, const char* key) const {
    const std::int64_t x = integer(v, key);
    if (x < 0 || x > std::numeric_limits<Token>::max())
      fail(key, "token id " + std::to_string(x) + " is out of range");
    return static_cast<Token>(x);
  }
  void tokens(const char* key, std::optional<std::vector<Token>>& out, bool allow_single) const {
    if (const json* v = find(key)) {
      std::vector<Token> ids;
      if (v->is_array()) {
        for (const json& e : *v) ids.push_back(token(e, key));
      } else if (allow_single) {
        ids.push_back(token(*v, key));
      } else {
        fail(key, "expected a list of token ids, got " + io::detail::json_excerpt(*v));
      }
      out = std::move(ids);
    }
  }

 private:
  const json& obj_;
  std::string_view source_;
};

DraftLengthSchedule parse_schedule(const std::string& s, std::string_view source) {
  if (s == "constant") return DraftLengthSchedule::constant;
  if (s == "heuristic") return DraftLengthSchedule::heuristic;
  if (s == "heuristic_transient") return DraftLengthSchedule::heuristic_transient;
  if (s == "confidence") return DraftLengthSchedule::confidence;
  throw UnsupportedError(
      std::string(source) + ": num_assistant_tokens_schedule '" + s +
      "' is not supported (constant, heuristic, heuristic_transient, confidence)");
}

// generation_config.json fields that change HF's output but that assistgen
// does not implement, with HF's default (the value that changes nothing).
// A field set to anything else is named in one warning: the output then
// differs from Hugging Face's with the same file.
struct UnsupportedField {
  const char* name;
  json neutral;  // null: any non-null, non-empty value changes the output
};

const std::vector<UnsupportedField>& unsupported_fields() {
  static const std::vector<UnsupportedField> fields{
      {"num_beams", 1},
      {"num_beam_groups", 1},
      {"num_return_sequences", 1},
      {"penalty_alpha", nullptr},
      {"no_repeat_ngram_size", 0},
      {"encoder_no_repeat_ngram_size", 0},
      {"typical_p", 1.0},
      {"epsilon_cutoff", 0.0},
      {"eta_cutoff", 0.0},
      {"diversity_penalty", 0.0},
      {"encoder_repetition_penalty", 1.0},
      {"length_penalty", 1.0},
      {"bad_words_ids", nullptr},
      {"force_words_ids", nullptr},
      {"sequence_bias", nullptr},
      {"min_length", 0},
      {"min_new_tokens", nullptr},
      {"forced_bos_token_id", nullptr},
      {"forced_eos_token_id", nullptr},
      {"begin_suppress_tokens", nullptr},
      {"exponential_decay_length_penalty", nullptr},
      {"renormalize_logits", false},
      {"guidance_scale", nullptr},
      {"constraints", nullptr},
      {"dola_layers", nullptr},
      {"max_time", nullptr},
      {"watermarking_config", nullptr},
      {"top_h", nullptr},
      {"top_n_sigma", nullptr},
  };
  return fields;
}

bool changes_output(const json& value, const json& neutral) {
  if (value.is_null()) return false;
  if ((value.is_array() || value.is_object() || value.is_string()) && value.empty()) return false;
  if (neutral.is_null()) return true;
  if (value.is_number() && neutral.is_number()) return value.get<double>() != neutral.get<double>();
  return value != neutral;
}

void warn_unsupported_fields(const json& j, std::string_view source) {
  std::string named;
  for (const UnsupportedField& f : unsupported_fields()) {
    auto it = j.find(f.name);
    if (it == j.end() || !changes_output(*it, f.neutral)) continue;
    std::string value = it->dump();
    if (value.size() > 40) value = value.substr(0, 37) + "...";
    named += (named.empty() ? "" : ", ") + std::string(f.name) + " = " + value;
  }
  if (!named.empty())
    warn(std::string(source) + ": ignoring fields assistgen does not implement (" + named +
         "); the output will differ from Hugging Face's with this file");
}

template <class T>
void take(std::optional<T>& dst, const std::optional<T>& src) {
  if (src) dst = src;
}

}  // namespace

GenerateOptions GenerateOptions::merged(const GenerateOptions& o) const {
  GenerateOptions r = *this;
  for_each_field([](const char*, auto& dst, const auto& src) { take(dst, src); }, r, o);
  return r;
}

GenerateOptions GenerateOptions::parse_generation_config(std::string_view json_text,
                                                         std::string_view source) {
  const json j = io::detail::parse_strict_json<ConfigError>(json_text, std::string(source));
  if (!j.is_object()) throw ConfigError(std::string(source) + ": expected a JSON object");
  warn_unsupported_fields(j, source);
  const FieldReader r(j, source);
  GenerateOptions o;
  r.size("max_new_tokens", o.max_new_tokens);
  r.size("max_length", o.max_length, 1);
  r.boolean("do_sample", o.do_sample);
  r.number("temperature", o.temperature);
  r.size("top_k", o.top_k);
  r.number("top_p", o.top_p);
  r.number("min_p", o.min_p);
  r.number("repetition_penalty", o.repetition_penalty);
  r.tokens("suppress_tokens", o.suppress_tokens, false);
  r.tokens("eos_token_id", o.eos_token_id, true);
  if (const json* v = r.find("bos_token_id")) o.bos_token_id = r.token(*v, "bos_token_id");
  r.size("num_assistant_tokens", o.num_assistant_tokens, 1);
  if (const json* v = r.find("num_assistant_tokens_schedule")) {
    if (!v->is_string())
      r.fail("num_assistant_tokens_schedule",
             "expected a string, got " + io::detail::json_excerpt(*v));
    o.schedule = parse_schedule(v->get<std::string>(), source);
  }
  r.number("assistant_confidence_threshold", o.assistant_confidence_threshold);
  if (o.assistant_confidence_threshold &&
      !(*o.assistant_confidence_threshold >= 0.0f && *o.assistant_confidence_threshold <= 1.0f))
    r.fail("assistant_confidence_threshold", "must be in [0, 1]");
  r.size("assistant_early_exit", o.assistant_early_exit);
  r.size("prompt_lookup_num_tokens", o.prompt_lookup_num_tokens);
  r.size("max_matching_ngram_size", o.max_matching_ngram_size, 1);
  if (const json* v = r.find("stop_strings")) {
    std::vector<std::string> stops;
    auto add = [&](const json& e) {
      if (!e.is_string())
        r.fail("stop_strings",
               "expected a string or a list of strings, got " + io::detail::json_excerpt(e));
      stops.push_back(e.get<std::string>());
    };
    if (v->is_array())
      for (const json& e : *v) add(e);
    else
      add(*v);
    try {
      detail::check_stop_strings(stops);
    } catch (const InvalidArgument& e) {
      r.fail("stop_strings", e.what());
    }
    o.stop = std::move(stops);
  }
  return o;
}

GenerateOptions GenerateOptions::load_generation_config(const std::filesystem::path& path) {
  return parse_generation_config(
      io::detail::read_bounded_file(path, io::detail::kMaxConfigJsonBytes), path.string());
}

Model::Model(AnyModel backend, Tokenizer tokenizer, GenerateOptions defaults)
    : backend_(std::move(backend)),
      tokenizer_(std::move(tokenizer)),
      defaults_(std::move(defaults)) {
  const std::size_t rows = backend_.vocab_size();
  const std::size_t known = std::min(rows, tokenizer_.vocab_size());
  for (std::size_t id = 0; id < known; ++id) {
    try {
      (void)tokenizer_.id_to_token(static_cast<Token>(id));
    } catch (const InvalidArgument&) {
      masked_.push_back(static_cast<Token>(id));  // a hole of a sparse vocabulary
    }
  }
  for (std::size_t id = known; id < rows; ++id) masked_.push_back(static_cast<Token>(id));
}

std::vector<Token> Model::encode_prompt(std::string_view prompt, bool parse_special) const {
  std::vector<Token> ids = tokenizer_.encode(prompt, {.parse_special = parse_special});
  if (ids.empty() && defaults_.bos_token_id) ids.push_back(*defaults_.bos_token_id);
  return ids;
}

GenerationConfig Model::generation_config(const GenerateOptions& options,
                                          std::size_t prompt_tokens) const {
  return resolve_generation_config(defaults_, options, prompt_tokens);
}

GenerationConfig resolve_generation_config(const GenerateOptions& defaults_,
                                           const GenerateOptions& options,
                                           std::size_t prompt_tokens) {
  const GenerateOptions o = defaults_.merged(options);
  GenerationConfig c;
  auto from_length = [&](std::size_t max_length, const char* who) {
    if (max_length <= prompt_tokens)
      throw InvalidArgument(std::string("GenerateOptions: max_length ") +
                            std::to_string(max_length) + " (" + who +
                            ") does not exceed the prompt's " + std::to_string(prompt_tokens) +
                            " tokens; set max_new_tokens instead");
    return max_length - prompt_tokens;
  };
  if (options.max_new_tokens)
    c.max_new_tokens = *options.max_new_tokens;
  else if (options.max_length)
    c.max_new_tokens = from_length(*options.max_length, "given");
  else if (defaults_.max_new_tokens)
    c.max_new_tokens = *defaults_.max_new_tokens;
  else if (defaults_.max_length)
    c.max_new_tokens = from_length(*defaults_.max_length, "from generation_config.json");

  c.do_sample = o.do_sample.value_or(c.do_sample);
  c.temperature = o.temperature.value_or(c.temperature);
  c.top_k = o.top_k.value_or(50);
  c.top_p = o.top_p.value_or(c.top_p);
  c.min_p = o.min_p.value_or(c.min_p);
  c.repetition_penalty = o.repetition_penalty.value_or(c.repetition_penalty);
  c.suppress_tokens = o.suppress_tokens.value_or(std::vector<Token>{});
  c.seed = o.seed.value_or(c.seed);
  c.eos_token_ids = o.eos_token_id.value_or(std::vector<Token>{});
  c.num_assistant_tokens = o.num_assistant_tokens.value_or(c.num_assistant_tokens);
  c.schedule = o.schedule.value_or(c.schedule);
  c.assistant_confidence_threshold =
      o.assistant_confidence_threshold.value_or(c.assistant_confidence_threshold);
  c.dynamic_confidence_threshold =
      o.dynamic_confidence_threshold.value_or(c.dynamic_confidence_threshold);
  c.draft_p_min = o.draft_p_min.value_or(c.draft_p_min);
  c.draft_min_tokens = o.draft_min_tokens.value_or(c.draft_min_tokens);
  c.prompt_lookup_num_tokens = o.prompt_lookup_num_tokens.value_or(c.prompt_lookup_num_tokens);
  c.max_matching_ngram_size = o.max_matching_ngram_size.value_or(c.max_matching_ngram_size);
  c.tree_nodes = o.tree_nodes.value_or(c.tree_nodes);
  c.tree_width = o.tree_width.value_or(c.tree_width);
  c.tree_shape = o.tree_shape.value_or(c.tree_shape);
  c.cache_capacity = o.cache_capacity.value_or(c.cache_capacity);
  return c;
}

bool Model::same_vocabulary(const Model& other) const {
  const Tokenizer& a = tokenizer_;
  const Tokenizer& b = other.tokenizer_;
  if (a.vocab_size() != b.vocab_size()) return false;
  auto token = [](const Tokenizer& t, Token id) -> std::optional<std::string> {
    try {
      return t.id_to_token(id);
    } catch (const InvalidArgument&) {
      return std::nullopt;
    }
  };
  for (std::size_t i = 0; i < a.vocab_size(); ++i) {
    const auto id = static_cast<Token>(i);
    if (token(a, id) != token(b, id) || a.is_special(id) != b.is_special(id)) return false;
  }
  return true;
}

std::pair<Assistance, std::string> Model::pairing(const Model& assistant) const {
  const Tokenizer& t = tokenizer_;
  const Tokenizer& d = assistant.tokenizer_;
  const std::size_t target_rows = backend_.vocab_size(), draft_rows = assistant.backend_.vocab_size();
  const std::string rows = "target " + std::to_string(target_rows) + " logit rows, draft " +
                           std::to_string(draft_rows);
  if (!same_vocabulary(assistant)) {
    std::string why = "the tokenizers differ (target " + std::to_string(t.vocab_size()) + " tokens, draft " +
                      std::to_string(d.vocab_size());
    auto token = [](const Tokenizer& k, std::size_t id) -> std::string {
      try {
        return "'" + k.id_to_token(static_cast<Token>(id)) + "'";
      } catch (const InvalidArgument&) {
        return "none";
      }
    };
    for (std::size_t id = 0; id < std::min(t.vocab_size(), d.vocab_size()); ++id)
      if (token(t, id) != token(d, id) ||
          t.is_special(static_cast<Token>(id)) != d.is_special(static_cast<Token>(id))) {
        why += "; id " + std::to_string(id) + " is " + token(t, id) + " for the target, " + token(d, id) +
               " for the draft";
        break;
      }
    return {Assistance::universal, why + "): the draft's text is re-tokenized"};
  }
  // Every target row the tokenizer has a token for must have a draft row;
  // the rest (padding) are masked and never generated.
  try {
    detail::check_draft_vocab(draft_rows, target_rows, masked_);
  } catch (const CompatibilityError&) {
    return {Assistance::universal, "same tokenizer (" + std::to_string(t.vocab_size()) + " tokens), but " + rows +
                                       ": the draft cannot score every token, so its text is re-tokenized"};
  }
  std::string why = "same tokenizer (" + std::to_string(t.vocab_size()) + " tokens); " + rows;
  if (target_rows > draft_rows)
    why += ": the target's " + std::to_string(target_rows - draft_rows) +
           " extra rows are padding, masked, so the ids are shared";
  else if (draft_rows > target_rows)
    why += ": the draft's " + std::to_string(draft_rows - target_rows) + " extra rows are ignored";
  return {Assistance::draft, why};
}

TextResult Model::generate(std::string_view prompt, const GenerateOptions& options,
                           const TextCallback& on_text) const {
  return run(prompt, nullptr, options, on_text);
}

TextResult Model::generate(std::string_view prompt, const Model& assistant,
                           const GenerateOptions& options, const TextCallback& on_text) const {
  return run(prompt, &assistant, options, on_text);
}

TextResult Model::run(std::string_view prompt_text, const Model* assistant,
                      const GenerateOptions& options, const TextCallback& on_text) const {
  std::vector<Token> prompt = tokenizer_.encode(
      prompt_text,
      {.parse_special = options.parse_special.value_or(defaults_.parse_special.value_or(false))});
  return run_ids(std::move(prompt), assistant, options, on_text, nullptr);
}

Model Model::with_chat_template(ChatTemplate chat_template) const {
  Model m = *this;
  m.chat_template_ = std::make_shared<const ChatTemplate>(std::move(chat_template));
  m.chat_template_error_.clear();
  return m;
}

const ChatTemplate& Model::chat_template() const {
  if (!chat_template_ && !chat_template_error_.empty())
    throw ConfigError("the model's chat template did not load: " + chat_template_error_ +
                      " (give one with Model::with_chat_template; assistgen: --template FILE)");
  if (!chat_template_)
    throw ConfigError(
        "the model has no chat template attached: load it with ChatTemplate::load(dir) (from "
        "tokenizer_config.json or chat_template.jinja) and Model::with_chat_template, or give "
        "one (assistgen: --template FILE)");
  return *chat_template_;
}

std::vector<Token> Model::encode_chat(const std::vector<ChatMessage>& messages,
                                      const ChatRenderOptions& render) const {
  const ChatTemplate& t = chat_template();
  return ChatTemplate::encode(tokenizer_, t.render(messages, render));
}

TextResult Model::chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                       const TextCallback& on_text) const {
  return run_ids(encode_chat(messages), nullptr, options, on_text, nullptr);
}

TextResult Model::chat(const std::vector<ChatMessage>& messages, const Model& assistant,
                       const GenerateOptions& options, const TextCallback& on_text) const {
  return run_ids(encode_chat(messages), &assistant, options, on_text, nullptr);
}

namespace detail {

PreparedRun prepare_run(const Model& target, std::vector<Token> prompt, const Model* assistant,
                        const GenerateOptions& options) {
  PreparedRun p;
  p.prompt = std::move(prompt);
  const GenerateOptions& defaults = target.generation_defaults();
  if (p.prompt.empty()) {
    const std::optional<Token> bos =
        options.bos_token_id ? options.bos_token_id : defaults.bos_token_id;
    if (!bos)
      throw InvalidArgument(
          "generate: the prompt encodes to no token and the model declares no bos_token_id");
    p.prompt.push_back(*bos);
  }
  // The model bounds the work, not the prompt: a prompt past the positions
  // it was trained for would cost a quadratic prefill (and a logits row per
  // token) for no usable output.
  auto check_length = [&](const AnyModel& m, const char* who) {
    const PositionLimits limits = m.position_limits();
    const std::size_t limit = limits.trained != 0 ? limits.trained : limits.hard;
    if (limit != 0 && p.prompt.size() > limit)
      throw CapacityError("generate: the prompt encodes to " + std::to_string(p.prompt.size()) +
                          " tokens, more than the " + who + "'s max_position_embeddings (" +
                          std::to_string(limit) + ", config.json)");
  };
  check_length(target.backend(), "model");
  if (assistant) check_length(assistant->backend(), "assistant model");
  p.cfg = target.generation_config(options, p.prompt.size());
  const std::span<const Token> masked = target.masked_tokens();
  p.cfg.suppress_tokens.insert(p.cfg.suppress_tokens.end(), masked.begin(), masked.end());
  p.skip_special =
      options.skip_special_tokens.value_or(defaults.skip_special_tokens.value_or(true));
  p.stops = options.stop.value_or(defaults.stop.value_or(std::vector<std::string>{}));
  check_stop_strings(p.stops);
  p.early_exit = options.assistant_early_exit.value_or(defaults.assistant_early_exit.value_or(0));
  if (p.early_exit && assistant)
    throw InvalidArgument(
        "generate: assistant_early_exit (self-speculation: the target drafts with its own first layers) "
        "and an assistant model are alternatives: give one");
  if (p.early_exit && p.cfg.prompt_lookup_num_tokens > 0)
    throw InvalidArgument(
        "generate: assistant_early_exit and prompt_lookup_num_tokens are alternatives: give one");
  return p;
}

}  // namespace detail

TextResult Model::run_ids(std::vector<Token> prompt, const Model* assistant,
                          const GenerateOptions& options, const TextCallback& on_text,
                          detail::SessionDecoders* session) const {
  TextResult out;
  detail::PreparedRun prep = detail::prepare_run(*this, std::move(prompt), assistant, options);
  out.prompt_tokens = std::move(prep.prompt);
  const GenerationConfig& cfg = prep.cfg;
  // Text streaming and stop strings ride on the token callback (TextStream).
  detail::TextStream stream(tokenizer_, prep.skip_special, prep.stops, on_text);
  const TokenCallback on_token = stream.token_callback();

  GenerationResult r;
  const std::size_t early_exit = prep.early_exit;
  if (uses_tree(cfg) && (early_exit || !assistant))
    throw InvalidArgument(
        "generate: tree_nodes / tree_shape (tree drafts) need an assistant model of the target's "
        "tokenizer, not " +
        std::string(early_exit ? "assistant_early_exit" : "prompt lookup or plain decoding"));
  if (early_exit) {
    out.assistance = Assistance::early_exit;
    detail::SessionDecoders local;
    detail::SessionDecoders& slots = session ? *session : local;
    if (!slots.early_exit) {
      slots.early_exit.emplace(backend_, early_exit, cfg);
      slots.early_exit->set_prefix_reuse(session != nullptr);
    }
    slots.early_exit->set_max_new_tokens(cfg.max_new_tokens);
    out.assistance_reason = "the target's first " + std::to_string(early_exit) + " of " +
                            std::to_string(backend_.num_layers()) + " layers draft; verification " +
                            (slots.early_exit->reuses() ? "reuses their K/V and hidden states"
                                                        : "recomputes every layer");
    r = slots.early_exit->generate(out.prompt_tokens, on_token);
  } else if (assistant) {
    auto [path, why] = pairing(*assistant);
    out.assistance_reason = std::move(why);
    if (path != Assistance::draft && uses_tree(cfg))
      throw InvalidArgument(
          "generate: tree_nodes / tree_shape (tree drafts) need an assistant with the "
          "target's tokenizer; this one drafts through another tokenizer");
    if (path == Assistance::draft && uses_tree(cfg)) {
      // Tree drafts: one decoder per call (prefix reuse is not kept for
      // sessions; the output is the same).
      out.assistance = Assistance::draft;
      TreeDecoder<AnyModel, AnyModel> decoder(assistant->backend_, backend_, cfg);
      r = decoder.generate(out.prompt_tokens, on_token);
    } else if (path == Assistance::draft) {
      out.assistance = Assistance::draft;
      if (!session) {
        SpeculativeDecoder<AnyModel, AnyModel> decoder(assistant->backend_, backend_, cfg);
        r = decoder.generate(out.prompt_tokens, on_token);
      } else {
        if (!session->draft) {
          session->draft.emplace(assistant->backend_, backend_, cfg);
          session->draft->set_prefix_reuse(true);
        }
        session->draft->set_max_new_tokens(cfg.max_new_tokens);
        r = session->draft->generate(out.prompt_tokens, on_token);
      }
    } else {
      out.assistance = Assistance::universal;
      detail::SessionDecoders local;
      detail::SessionDecoders& slots = session ? *session : local;
      if (!slots.universal) {
        UniversalOptions uo;
        uo.draft_suppress_tokens = assistant->masked_;
        slots.universal.emplace(assistant->backend_, assistant->tokenizer_, backend_, tokenizer_,
                                cfg, std::move(uo));
        slots.universal->set_prefix_reuse(session != nullptr);
      }
      slots.universal->set_max_new_tokens(cfg.max_new_tokens);
      r = slots.universal->generate(out.prompt_tokens, on_token);
    }
  } else if (cfg.prompt_lookup_num_tokens > 0) {
    out.assistance = Assistance::prompt_lookup;
    if (!session) {
      SpeculativeDecoder<NoDraft, AnyModel> decoder(backend_, cfg);
      r = decoder.generate(out.prompt_tokens, on_token);
    } else {
      if (!session->lookup) {
        session->lookup.emplace(backend_, cfg);
        session->lookup->set_prefix_reuse(true);
      }
      session->lookup->set_max_new_tokens(cfg.max_new_tokens);
      r = session->lookup->generate(out.prompt_tokens, on_token);
    }
  } else {
    out.assistance = Assistance::none;
    if (!session) {
      r = generate_autoregressive(backend_, out.prompt_tokens, cfg, on_token);
    } else {
      if (!session->plain) {
        session->plain.emplace(backend_, cfg);
        session->plain->set_prefix_reuse(true);
      }
      session->plain->set_max_new_tokens(cfg.max_new_tokens);
      r = session->plain->generate(out.prompt_tokens, on_token);
    }
  }
  stream.finish(std::move(r), out);
  return out;
}

}  // namespace assistgen

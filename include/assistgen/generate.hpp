// The text API, the top layer: a Model bundles a backend (AnyModel) with its
// Tokenizer and the defaults of its generation_config.json, and generates
// text from text, alone, with prompt lookup, or assisted by another Model:
//
//   auto target = assistgen::load_model("models/kjv-target");
//   auto draft  = assistgen::load_model("models/kjv-draft");
//   auto out = target.generate("And God said", draft, {.max_new_tokens = 64},
//                              [](std::string_view piece) { std::cout << piece << std::flush;
//                              return true; });
//
// Options (GenerateOptions) are overrides, as keyword arguments of Hugging
// Face's generate() are: every option left unset takes the model's
// generation_config.json value, else the library default. The assistant is
// used through SpeculativeDecoder when both tokenizers have the same
// vocabulary (a target padded past its tokenizer included: Model::pairing),
// and through UniversalDecoder (re-tokenizing the draft's text when greedy,
// sampling over the tokens both vocabularies share) when they differ; the
// output is the target's either way. With assistant_early_exit the target
// drafts for itself with its first layers (SelfSpeculativeDecoder).
//
// Chat models: Model::chat generates a reply to a conversation rendered by the
// chat template attached with Model::with_chat_template (chat_template.hpp);
// ChatSession (chat.hpp) keeps a conversation and its KV caches between
// turns. GenerateOptions::stop ends generation at stop strings.
//
// Vocabulary padding: a model may have more logit rows than its tokenizer
// has tokens (embeddings padded to a multiple of 64 or 128). Trained models
// never pick those rows, a random or badly trained one can, and its id could
// not be decoded. The text API therefore masks (suppresses) every row the
// tokenizer has no token for: ids at or beyond tokenizer.vocab_size() and
// holes in a sparse vocabulary. Hugging Face does not mask them; for a
// trained model this changes nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "assistgen/any_model.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/chat_template.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/tensor_parallel.hpp"
#include "assistgen/tokenizer.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// Generation options as overrides: a set field replaces the model's
/// default. Field names follow HF's GenerationConfig (and generation_config.json);
/// `schedule` is HF's num_assistant_tokens_schedule.
///
/// Resolution (Model::generation_config): each field is the caller's value,
/// else generation_config.json's, else the library default, which is
/// GenerationConfig's except top_k = 50 (HF's default, so that a file with
/// do_sample and no top_k samples as HF does). Length: the caller's
/// max_new_tokens, else the caller's max_length minus the prompt, else the
/// file's max_new_tokens, else the file's max_length minus the prompt, else
/// 64 new tokens (HF would use max_length 20).
struct GenerateOptions {
  /// Upper bound on generated tokens, the prompt not counted; wins over
  /// max_length (see above for the order).
  std::optional<std::size_t> max_new_tokens = std::nullopt;
  /// Prompt + new tokens; must exceed the prompt length.
  std::optional<std::size_t> max_length = std::nullopt;

  /// true: sample; false (default): greedy, and temperature, top_k, top_p and
  /// min_p are ignored. With an assistant of another tokenizer, sampling
  /// drafts over the tokens both vocabularies share (UniversalDecoder).
  std::optional<bool> do_sample = std::nullopt;
  /// Logits are divided by it when sampling; must be > 0 and finite then
  /// (InvalidArgument). Default 1: off.
  std::optional<float> temperature = std::nullopt;
  std::optional<std::size_t> top_k = std::nullopt;  ///< 0: off. Default 50 (HF's), see above.
  /// Nucleus sampling: keep the smallest set of most probable tokens whose
  /// mass reaches it; in (0, 1] (else InvalidArgument). Default 1: off.
  std::optional<float> top_p = std::nullopt;
  /// Drop tokens less probable than min_p times the top token; in [0, 1]
  /// (else InvalidArgument). Default 0: off.
  std::optional<float> min_p = std::nullopt;
  /// HF's penalty on every token already in the sequence (prompt included),
  /// greedy or sampled; > 1 discourages repeats. Must be > 0 and finite
  /// (else InvalidArgument). Default 1: off.
  std::optional<float> repetition_penalty = std::nullopt;
  /// Ids never generated (logit -inf), greedy or sampled; each must be inside
  /// the target's vocabulary (else InvalidArgument). masked_tokens() are
  /// added to them. Default: none.
  std::optional<std::vector<Token>> suppress_tokens = std::nullopt;
  /// Seed of the sampling RNG, reseeded at every call: the same seed, prompt
  /// and models give the same text. Default 0.
  std::optional<std::uint64_t> seed = std::nullopt;

  /// Stop after any of these. Unset everywhere: config.json's eos_token_id,
  /// else the tokenizer's EOS.
  std::optional<std::vector<Token>> eos_token_id = std::nullopt;
  /// Used only when the prompt encodes to no token at all (HF starts from it
  /// then). Unset everywhere: config.json's, else the tokenizer's.
  std::optional<Token> bos_token_id = std::nullopt;

  /// K: tokens the assistant drafts per round (the start value of the
  /// heuristic schedules, the maximum for DraftLengthSchedule::confidence). At least 1
  /// (else InvalidArgument when assisted). Default 5.
  std::optional<std::size_t> num_assistant_tokens = std::nullopt;
  /// How K changes between rounds (HF's num_assistant_tokens_schedule).
  /// Default DraftLengthSchedule::constant.
  std::optional<DraftLengthSchedule> schedule = std::nullopt;
  /// DraftLengthSchedule::confidence: the draft stops proposing once its probability
  /// for its latest proposal is below this. In [0, 1] (else ConfigError from
  /// the file, InvalidArgument when assisted). Default 0.4.
  std::optional<float> assistant_confidence_threshold = std::nullopt;
  /// DraftLengthSchedule::confidence: re-fit the threshold after every round (see
  /// GenerationConfig). Default false; not read from generation_config.json.
  std::optional<bool> dynamic_confidence_threshold = std::nullopt;
  /// Any schedule: the draft stops before a token it gives a probability
  /// below this (GenerationConfig::draft_p_min). Default 0: off; not read
  /// from generation_config.json.
  std::optional<float> draft_p_min = std::nullopt;
  /// Rounds whose draft (or prompt lookup) proposes fewer tokens verify none
  /// (GenerationConfig::draft_min_tokens). Default 0; not read from
  /// generation_config.json.
  std::optional<std::size_t> draft_min_tokens = std::nullopt;
  /// Self-speculation (HF's assistant_early_exit): with no assistant, the
  /// target's own first E layers (then its final norm and LM head) draft the
  /// candidates on its own KV cache, and all layers verify them
  /// (SelfSpeculativeDecoder). 0: off (the default); else in [1, layers - 1]
  /// (else InvalidArgument); with an assistant or prompt lookup an
  /// InvalidArgument; UnsupportedError for a backend that can neither split
  /// its forward pass nor run layer plans.
  /// Read from generation_config.json's assistant_early_exit.
  std::optional<std::size_t> assistant_early_exit = std::nullopt;
  /// With no assistant: propose this many tokens by n-gram lookup (0: off).
  std::optional<std::size_t> prompt_lookup_num_tokens = std::nullopt;
  /// Prompt lookup: longest n-gram matched, tried down to 1. At least 1
  /// (else ConfigError from the file, InvalidArgument when looking up).
  /// Default 2.
  std::optional<std::size_t> max_matching_ngram_size = std::nullopt;
  /// Tree drafts (GenerationConfig::tree_nodes): with a draft model of the
  /// same tokenizer, a tree of this many candidates per round, verified in
  /// one target pass (TreeDecoder; num_assistant_tokens is its depth). 0 or
  /// unset: a chain. With another tokenizer, early exit or prompt lookup an
  /// InvalidArgument. Not read from generation_config.json.
  std::optional<std::size_t> tree_nodes = std::nullopt;
  /// Children per expanded node and nodes expanded per level
  /// (GenerationConfig::tree_width). Default 4.
  std::optional<std::size_t> tree_width = std::nullopt;
  /// A static tree shape instead (GenerationConfig::tree_shape).
  std::optional<std::vector<std::size_t>> tree_shape = std::nullopt;

  /// Positions each KV cache is made for; 0 (default) = prompt +
  /// max_new_tokens. Smaller stops generation with StopReason::capacity when
  /// full; a longer prompt is a CapacityError. Not read from
  /// generation_config.json.
  std::optional<std::size_t> cache_capacity = std::nullopt;
  /// Drop special tokens (EOS, ...) from the text; the ids keep them. Default true.
  std::optional<bool> skip_special_tokens = std::nullopt;
  /// Match special-token text typed in the prompt ("<|endoftext|>", "<s>")
  /// as single tokens (EncodeOptions::parse_special). Default false: it stays
  /// text, so user text cannot inject control tokens. Not read from
  /// generation_config.json.
  std::optional<bool> parse_special = std::nullopt;

  /// Stop strings: generation stops as soon as the decoded text (as
  /// TextResult::text decodes it) ends with any of them, across token
  /// boundaries. The stop string and anything after it are not part of the
  /// text, nor streamed: the streamed text holds back a tail that could still
  /// become a stop string. The token that completed it ends TextResult::tokens
  /// (as an EOS does) and stop_reason is StopReason::stop_string. With an
  /// assistant, a drafted block that contains a stop string is cut at the
  /// token completing it. Each must be non-empty and at most 1024 bytes, at
  /// most 64 of them (else InvalidArgument). Read from generation_config.json's
  /// stop_strings (a string or a list). Default: none.
  std::optional<std::vector<std::string>> stop = std::nullopt;

  /// This set of options with every field `over` sets replaced by its value.
  GenerateOptions merged(const GenerateOptions& over) const;

  /// Calls `f(name, a.field, b.field, ...)` for every field above, in
  /// declaration order, with the field's C++ name: the one list of the
  /// fields, for code that must treat each of them (merged(), the server's
  /// lockstep messages to the other ranks of a split target).
  template <class F, class... O>
  static void for_each_field(F&& f, O&... o) {
    f("max_new_tokens", o.max_new_tokens...);
    f("max_length", o.max_length...);
    f("do_sample", o.do_sample...);
    f("temperature", o.temperature...);
    f("top_k", o.top_k...);
    f("top_p", o.top_p...);
    f("min_p", o.min_p...);
    f("repetition_penalty", o.repetition_penalty...);
    f("suppress_tokens", o.suppress_tokens...);
    f("seed", o.seed...);
    f("eos_token_id", o.eos_token_id...);
    f("bos_token_id", o.bos_token_id...);
    f("num_assistant_tokens", o.num_assistant_tokens...);
    f("schedule", o.schedule...);
    f("assistant_confidence_threshold", o.assistant_confidence_threshold...);
    f("dynamic_confidence_threshold", o.dynamic_confidence_threshold...);
    f("draft_p_min", o.draft_p_min...);
    f("draft_min_tokens", o.draft_min_tokens...);
    f("assistant_early_exit", o.assistant_early_exit...);
    f("prompt_lookup_num_tokens", o.prompt_lookup_num_tokens...);
    f("max_matching_ngram_size", o.max_matching_ngram_size...);
    f("tree_nodes", o.tree_nodes...);
    f("tree_width", o.tree_width...);
    f("tree_shape", o.tree_shape...);
    f("cache_capacity", o.cache_capacity...);
    f("skip_special_tokens", o.skip_special_tokens...);
    f("parse_special", o.parse_special...);
    f("stop", o.stop...);
  }

  /// Parses a generation_config.json text. Reads the fields above that HF
  /// defines (max_new_tokens, max_length, do_sample, temperature, top_k,
  /// top_p, min_p, repetition_penalty, suppress_tokens, eos_token_id (a number
  /// or a list), bos_token_id, num_assistant_tokens,
  /// num_assistant_tokens_schedule, assistant_confidence_threshold,
  /// assistant_early_exit, prompt_lookup_num_tokens, max_matching_ngram_size, stop_strings as
  /// `stop`); null means unset.
  /// Other fields are ignored; those that would change Hugging Face's output
  /// (num_beams, no_repeat_ngram_size, typical_p, min_new_tokens, ... set to
  /// anything but HF's neutral default) are named in one warning (log.hpp),
  /// since the output then differs from HF's with the same file. A field of the wrong type or out
  /// of range is a ConfigError naming `source` and the field; an unknown schedule an
  /// UnsupportedError.
  static GenerateOptions parse_generation_config(
      std::string_view json_text, std::string_view source = "generation_config.json");
  /// Reads and parses a generation_config.json file (IoError when unreadable).
  static GenerateOptions load_generation_config(const std::filesystem::path& path);
};

/// The full configuration of a generation: each field is `options`' value,
/// else `defaults`' (a generation_config.json), else the library default,
/// with the length rules of GenerateOptions for a prompt of `prompt_tokens`
/// tokens. Model::generation_config is this with the model's defaults; a
/// program that runs token ids without a Model uses it directly. Throws
/// InvalidArgument when max_length does not exceed the prompt.
GenerationConfig resolve_generation_config(const GenerateOptions& defaults,
                                           const GenerateOptions& options,
                                           std::size_t prompt_tokens);

/// Streaming text callback: called with each piece of text as soon as it is
/// final (never a broken UTF-8 sequence). Return false to stop generating.
using TextCallback = std::function<bool(std::string_view piece)>;

/// How a generation was assisted.
enum class Assistance {
  none,           ///< plain decoding of the target
  draft,          ///< a draft model with the target's vocabulary (SpeculativeDecoder)
  universal,      ///< a draft model with another tokenizer (UniversalDecoder)
  prompt_lookup,  ///< n-gram candidates from the sequence itself
  early_exit,     ///< the target's own first layers (self-speculation, SelfSpeculativeDecoder)
};

/// Lower-case name of an Assistance value ("universal", ...).
constexpr std::string_view assistance_name(Assistance a) {
  switch (a) {
    case Assistance::none:
      return "none";
    case Assistance::draft:
      return "draft";
    case Assistance::universal:
      return "universal";
    case Assistance::prompt_lookup:
      return "prompt_lookup";
    case Assistance::early_exit:
      return "early_exit";
  }
  return "?";
}

/// What a text generation returns.
struct TextResult {
  /// The new tokens decoded (the prompt is not repeated), cut before a stop string.
  std::string text = {};
  /// The new token ids, EOS (or the token completing a stop string) included
  /// when it stopped generation.
  std::vector<Token> tokens = {};
  std::vector<Token> prompt_tokens = {};  ///< the prompt as the target's tokenizer encoded it
  GenerationStats stats = {};             ///< counters and timings
  StopReason stop_reason = StopReason::max_new_tokens;  ///< why generation ended
  Assistance assistance = Assistance::none;             ///< how it was assisted
  /// Why that path: for an assistant, how its vocabulary compares with the
  /// target's ("same tokenizer ...", "tokenizers differ ..."); for early
  /// exit, the layers and the verification mode. Empty without assistance.
  std::string assistance_reason = {};
};

/// One sequence of a batch (Model::generate_batch, generate_batch_ids).
struct BatchRequest {
  /// The prompt's text, encoded as generate() encodes it.
  std::string prompt = {};
  /// Token ids instead of the text (used when set; `prompt` is then ignored).
  std::optional<std::vector<Token>> tokens = std::nullopt;
  /// This sequence's options (overrides of the model's defaults, as in generate()).
  GenerateOptions options = {};
};

/// Streaming callback of a batch: the index of the request a piece of text
/// belongs to, and the piece. Return false to stop that sequence only.
using BatchTextCallback = std::function<bool(std::size_t index, std::string_view piece)>;

/// How a batch is run.
struct BatchGenerateOptions {
  /// Sequences verified together in one round (BatchOptions::max_batch).
  std::size_t max_batch = 8;
  /// Bound on the KV caches' bytes (KvCacheManager); 0: none. A sequence
  /// whose caches do not fit waits until running ones finish.
  std::size_t max_cache_bytes = 0;
  /// Tree drafts for every sequence (GenerationConfig::tree_nodes,
  /// tree_width, tree_shape), with an assistant of the target's tokenizer:
  /// each round verifies every sequence's tree in one target call. 0 nodes
  /// and an empty shape: chains (the default). Ignored without such an
  /// assistant.
  std::size_t tree_nodes = 0;
  std::size_t tree_width = 4;                ///< see tree_nodes
  std::vector<std::size_t> tree_shape = {};  ///< see tree_nodes
  /// Whether tree_nodes or tree_shape asks for trees.
  bool trees() const { return tree_nodes > 0 || !tree_shape.empty(); }
};

/// What a batch returns.
struct BatchTextResult {
  /// One per request, in the requests' order.
  std::vector<TextResult> results = {};
  /// One per request: set when that request failed (bad options, a prompt
  /// too long, its callback threw), its result then empty or partial; the
  /// other requests are not affected.
  std::vector<std::exception_ptr> errors = {};
  /// The engine's counters: rounds, mean batch size, time in the models.
  BatchStats stats = {};
  /// Wall-clock seconds of the whole batch.
  double seconds = 0.0;
  /// Whether every request succeeded.
  bool ok() const {
    for (const auto& e : errors)
      if (e) return false;
    return true;
  }
};

namespace detail {
struct SessionDecoders;  // the decoders a ChatSession keeps between turns
}

struct LoadModelOptions;
class Model;
Model load_model(const std::filesystem::path& dir, const LoadModelOptions& options);

/// A model ready for text: backend, tokenizer and generation defaults, and
/// optionally a chat template. Immutable; generate() and chat() may be
/// called concurrently (each call has its own caches). Copies share the
/// loaded model, tokenizer and template.
class Model {
 public:
  /// Bundles `backend` with `tokenizer`; `defaults` play the role of
  /// generation_config.json (load_model fills eos / bos from config.json and
  /// the tokenizer when the file lacks them).
  Model(AnyModel backend, Tokenizer tokenizer, GenerateOptions defaults = {});

  /// The model itself (shared by copies of this Model).
  const AnyModel& backend() const { return backend_; }
  /// The tokenizer prompts are encoded and outputs decoded with.
  const Tokenizer& tokenizer() const { return tokenizer_; }
  /// The model's own defaults (generation_config.json plus the eos / bos fallbacks).
  const GenerateOptions& generation_defaults() const { return defaults_; }
  /// Ids of logit rows the tokenizer has no token for; always suppressed.
  std::span<const Token> masked_tokens() const { return masked_; }

  /// The prompt as generate() encodes it: the tokenizer's encode with its
  /// special tokens (add_bos per tokenizer_config.json); special-token text
  /// typed in the prompt stays text unless `parse_special`. Empty text gives [bos] when a BOS is
  /// known.
  std::vector<Token> encode_prompt(std::string_view prompt, bool parse_special = false) const;

  /// The full configuration a generation with `options` and a prompt of
  /// `prompt_tokens` tokens runs with (see GenerateOptions for the order).
  /// Throws InvalidArgument when max_length does not exceed the prompt.
  GenerationConfig generation_config(const GenerateOptions& options = {},
                                     std::size_t prompt_tokens = 0) const;

  /// Whether `other` has the same tokenizer vocabulary (every id maps to the
  /// same token string), so that ids can be shared without re-tokenizing.
  bool same_vocabulary(const Model& other) const;

  /// How generate(prompt, assistant) pairs this target with `assistant`, and
  /// why. Assistance::draft (token ids shared) when the two tokenizers have
  /// the same vocabulary (compared token by token, not by logit rows) and the
  /// draft's rows cover every target row that can be generated: a target
  /// padded past its tokenizer (more logit rows than the draft) has those rows
  /// masked (masked_tokens()) and takes this path. Assistance::universal
  /// otherwise: the tokenizers differ, or the draft has fewer rows than the
  /// tokenizer has tokens. The reason names the sizes (and the first id whose
  /// token differs).
  std::pair<Assistance, std::string> pairing(const Model& assistant) const;

  /// Continues `prompt` with this model alone (or with prompt lookup when
  /// prompt_lookup_num_tokens > 0). `on_text` streams the text.
  TextResult generate(std::string_view prompt, const GenerateOptions& options = {},
                      const TextCallback& on_text = {}) const;

  /// Continues `prompt` with this model as the target and `assistant` as the
  /// draft, paired as pairing() says: same-vocabulary pairs (a target padded
  /// past its tokenizer included) use SpeculativeDecoder, the others
  /// UniversalDecoder; both greedy or sampling, with the output the target's
  /// own (greedy) or following its distribution. TextResult says which path
  /// and why (assistance, assistance_reason). The assistant's own
  /// generation defaults are not used, except its tokenizer's.
  TextResult generate(std::string_view prompt, const Model& assistant,
                      const GenerateOptions& options = {}, const TextCallback& on_text = {}) const;

  /// Generates for many prompts at once with continuous batching
  /// (BatchEngine): every round verifies all running sequences in one
  /// target call. Each request has its own options (seed, sampling,
  /// lengths, stop strings, prompt lookup, assistant_early_exit when there
  /// is no assistant); each result is exactly what
  /// generate() gives for that request alone (same tokens, same text).
  /// With `assistant`, it drafts for every sequence as generate(prompt,
  /// *assistant, ...) would (its draft steps batched too when it shares the
  /// target's ids). `on_text` receives the request's index with each piece.
  /// Bad requests do not throw: their error is in BatchTextResult::errors.
  BatchTextResult generate_batch(std::span<const BatchRequest> requests,
                                 const Model* assistant = nullptr,
                                 const BatchGenerateOptions& batch = {},
                                 const BatchTextCallback& on_text = {}) const;
  /// The texts `prompts` with the same `options`; throws the first
  /// request's error, if any.
  std::vector<TextResult> generate_batch(const std::vector<std::string>& prompts,
                                         const GenerateOptions& options = {},
                                         const BatchTextCallback& on_text = {},
                                         const BatchGenerateOptions& batch = {}) const;
  /// As above, assisted by `assistant`.
  std::vector<TextResult> generate_batch(const std::vector<std::string>& prompts,
                                         const Model& assistant,
                                         const GenerateOptions& options = {},
                                         const BatchTextCallback& on_text = {},
                                         const BatchGenerateOptions& batch = {}) const;

  /// This model with `chat_template` as its chat template (a copy sharing
  /// the loaded model), replacing the one load_model attached, if any. For
  /// a template from a file, see ChatTemplate::from_string_for.
  Model with_chat_template(ChatTemplate chat_template) const;
  /// Whether a chat template is attached. load_model attaches the model
  /// directory's own (chat_template.jinja or tokenizer_config.json's
  /// chat_template) when it has one.
  bool has_chat_template() const { return chat_template_ != nullptr; }
  /// The attached chat template. ConfigError when there is none; when the
  /// model directory's template failed to load (a template that does not
  /// parse does not stop the model from loading for plain generation), a
  /// ConfigError with that failure, naming the file.
  const ChatTemplate& chat_template() const;

  /// The assistant's reply to `messages`: the conversation rendered by the
  /// chat template with add_generation_prompt, encoded as ChatTemplate::encode
  /// does (the template's special tokens parsed, the messages' text literal),
  /// then generated as generate() does from those ids. TextResult::prompt_tokens
  /// holds the encoded conversation. ConfigError without a chat template;
  /// the template's own errors as ChatTemplate::render throws them.
  TextResult chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options = {},
                  const TextCallback& on_text = {}) const;
  /// As chat() above, assisted by `assistant` as generate() is.
  TextResult chat(const std::vector<ChatMessage>& messages, const Model& assistant,
                  const GenerateOptions& options = {}, const TextCallback& on_text = {}) const;

  /// The conversation as chat() encodes it (rendered with
  /// add_generation_prompt = true unless `render` says otherwise).
  std::vector<Token> encode_chat(const std::vector<ChatMessage>& messages,
                                 const ChatRenderOptions& render = {}) const;

 private:
  friend class ChatSession;
  friend Model load_model(const std::filesystem::path& dir, const LoadModelOptions& options);
  TextResult run(std::string_view prompt, const Model* assistant, const GenerateOptions& options,
                 const TextCallback& on_text) const;
  // The generation itself, from prompt ids; `session` (may be null) keeps the
  // decoders, and so the caches, between calls.
  TextResult run_ids(std::vector<Token> prompt, const Model* assistant,
                     const GenerateOptions& options, const TextCallback& on_text,
                     detail::SessionDecoders* session) const;

  AnyModel backend_;
  Tokenizer tokenizer_;
  GenerateOptions defaults_;
  std::vector<Token> masked_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  std::string chat_template_error_;  // why the directory's template did not load
};

/// One sequence of generate_batch_ids: prompt ids and the full configuration.
struct BatchIdsRequest {
  std::vector<Token> prompt = {};  ///< not empty, ids below the target's vocabulary
  GenerationConfig config = {};    ///< e.g. from resolve_generation_config()
  /// Self-speculation: the target's first `early_exit` layers draft
  /// (SelfSpeculativeDecoder's output); 0: none. Not with a draft model.
  std::size_t early_exit = 0;
};

/// What generate_batch_ids returns.
struct BatchIdsResult {
  std::vector<GenerationResult> results = {};   ///< one per request, in order
  std::vector<std::exception_ptr> errors = {};  ///< one per request, set when it failed
  std::vector<Assistance> assistance = {};      ///< how each request was assisted
  BatchStats stats = {};                        ///< the engine's counters
  double seconds = 0.0;                         ///< wall-clock seconds of the batch
};

/// The token-level batch under Model::generate_batch, for models without a
/// tokenizer: continuous batching of `target` over `requests`, each assisted
/// by `draft` (same ids; null: none, or prompt lookup when the request's
/// prompt_lookup_num_tokens > 0). `on_token(index, token)` streams; false
/// stops that sequence. Each result equals what SpeculativeDecoder /
/// AutoregressiveDecoder give for the request alone.
BatchIdsResult generate_batch_ids(
    const AnyModel& target, const AnyModel* draft, std::span<const BatchIdsRequest> requests,
    const BatchGenerateOptions& batch = {},
    const std::function<bool(std::size_t index, Token token)>& on_token = {});

/// A backend loaded by LoadModelOptions::backend: the model and its parsed
/// config.json (load_model checks the tokenizer and generation_config.json
/// against it).
struct LoadedBackend {
  AnyModel model;      ///< the loaded backend
  ModelConfig config;  ///< its config.json
};

/// How load_model loads the backend.
struct LoadModelOptions {
  /// Compute type of the weights (see cpu::LoadOptions); unset: bf16 for a
  /// checkpoint whose matmul weights are bf16, else f32.
  std::optional<DType> dtype = std::nullopt;
  /// Threads for the CPU backend (cpu::LoadOptions::threads); 0 = OMP_NUM_THREADS, else
  /// one per core.
  int threads = 0;
  /// Progress of the weights' load (cpu::LoadOptions::on_progress). Empty: none.
  std::function<void(const LoadProgress&)> on_progress = {};
  /// Loads the model directory onto another backend instead of
  /// cpu::Transformer, e.g. hpu::text_backend() (assistgen/hpu/text.hpp).
  /// dtype, threads and on_progress are the CPU backend's: with a backend
  /// they must be left unset (InvalidArgument naming the field); the
  /// backend's own options say how it loads. Empty: the CPU backend.
  std::function<LoadedBackend(const std::filesystem::path& dir)> backend = {};
  /// Split the model over these ranks (cpu::LoadOptions::tensor_parallel,
  /// docs/distributed.md). Empty: the whole model in this process.
  std::shared_ptr<RankGroup> tensor_parallel = {};
};

/// Loads a Hugging Face model directory onto the CPU backend: config.json and
/// safetensors (cpu::Transformer), tokenizer.json (+ tokenizer_config.json),
/// and generation_config.json when present. `dir` may also be a GGUF model
/// file of the Llama family (io::load_gguf_model): its tokenizer.json,
/// tokenizer_config.json and generation_config.json are then read from the
/// file's directory. eos / bos missing from
/// generation_config.json come from config.json, else from the tokenizer.
/// Errors name the file at fault. Defined in the assistgen::cpu library
/// (link assistgen::cpu to use it).
Model load_model(const std::filesystem::path& dir, const LoadModelOptions& options = {});

}  // namespace assistgen

// Text <-> token ids for the models assistgen runs: a Hugging Face
// `tokenizer.json` (BPE model with its normalizer, pre-tokenizer, decoder and
// post-processor) loaded once and then used, immutably and from any thread, to
// encode prompts and to decode (also incrementally, while generating) the
// tokens a model produces.
//
// Supported components (anything else in the file is an UnsupportedError that
// names the component, never a silently different tokenization):
//   model          BPE (vocab, merges as "a b" strings or [a, b] pairs,
//                  byte_fallback, ignore_merges, unk_token + fuse_unk,
//                  continuing_subword_prefix, end_of_word_suffix; dropout null)
//   normalizer     NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence
//   pre_tokenizer  ByteLevel, Split, Metaspace, Digits, Sequence
//   decoder        ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence
//   post_processor TemplateProcessing (single sequence), ByteLevel, Sequence
//
// Decoding follows the Rust `tokenizers` crate (no transformers-style
// "clean_up_tokenization_spaces"); bytes that do not form valid UTF-8 become
// U+FFFD, one per maximal invalid subpart (as the WHATWG/Unicode rule says).
#pragma once

#include <assistgen/types.hpp>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace assistgen {

/// A byte range [begin, end) of a text.
struct ByteRange {
  std::size_t begin = 0;  ///< first byte
  std::size_t end = 0;    ///< one past the last byte
};

/// Options of Tokenizer::encode, meant for designated initialisers:
/// `tok.encode(text, {.add_special_tokens = false})`.
struct EncodeOptions {
  /// Run the post-processor (TemplateProcessing: e.g. prepend BOS), or, when
  /// tokenizer_config.json sets add_bos_token / add_eos_token, add those.
  bool add_special_tokens = true;
  /// Match the text of *special* added tokens ("<|endoftext|>", "<s>") in the
  /// input as single tokens. Off by default so that user text cannot inject
  /// control tokens: "<|endoftext|>" typed by a user is encoded as ordinary
  /// text. Non-special added tokens are always matched, as in Hugging Face.
  bool parse_special = false;
  /// With parse_special: byte ranges of the text (after U+FFFD repair, which
  /// leaves valid UTF-8 unchanged) where special tokens are still not
  /// matched, because that text came from a user (the messages inside a
  /// rendered chat template: ChatTemplate::encode). A special token is
  /// matched only if it overlaps none of them. Sorted or not; the span must
  /// outlive the call.
  std::span<const ByteRange> literal_ranges = {};
};

class StreamingDetokenizer;

/// A loaded Hugging Face tokenizer. Immutable after load(); encode() and
/// decode() may be called concurrently from any number of threads. Copies are
/// cheap (they share the loaded tables).
class Tokenizer {
 public:
  /// Loads `dir_or_file`: either a `tokenizer.json` file, a directory that
  /// holds one, or a GGUF model file (io::is_gguf_path) with a tokenizer.json
  /// in its directory. `tokenizer_config.json` and `generation_config.json` next to
  /// it, when present, supply bos/eos tokens and add_bos_token/add_eos_token.
  /// Throws IoError (missing/unreadable file), FormatError (malformed JSON or
  /// inconsistent tables; the message names the field), UnsupportedError (a
  /// component this library does not implement, named in the message).
  static Tokenizer load(const std::filesystem::path& dir_or_file);

  /// Parses a tokenizer from JSON text; `tokenizer_config_json` and
  /// `generation_config_json` may be empty. `origin` names the source in errors.
  static Tokenizer from_json(std::string_view tokenizer_json,
                             std::string_view tokenizer_config_json = {},
                             std::string_view generation_config_json = {},
                             std::string_view origin = "tokenizer.json");

  /// Encodes `text` to token ids. Never throws for bad text: invalid UTF-8
  /// sequences are replaced by U+FFFD (one per maximal invalid subpart)
  /// before tokenization, so encode() of such bytes equals encode() of the
  /// repaired string. Runs in O(n log n) of the text length.
  std::vector<Token> encode(std::string_view text, const EncodeOptions& options = {}) const;

  /// Decodes ids to text through the tokenizer's decoder. Throws
  /// InvalidArgument naming the id when an id is not in the vocabulary.
  /// `skip_special` drops special added tokens (bos, eos, ...).
  std::string decode(std::span<const Token> ids, bool skip_special = false) const;

  /// Number of ids: one more than the largest id of the vocabulary and the
  /// added tokens (ids inside may be unused in sparse vocabularies).
  std::size_t vocab_size() const;
  /// The id of a vocabulary or added token, given its exact string.
  std::optional<Token> token_to_id(std::string_view token) const;
  /// The vocabulary string of `id` (byte-level or metaspace form, as stored).
  /// Throws InvalidArgument when `id` is not in the vocabulary.
  std::string id_to_token(Token id) const;
  /// The beginning-of-sequence id, when the tokenizer has one.
  std::optional<Token> bos_id() const;
  /// End-of-sequence ids (generation_config may list several); may be empty.
  std::vector<Token> eos_ids() const;
  /// Whether `id` is a special added token (skipped by decode(..., true)).
  bool is_special(Token id) const;
  /// Whether `id` is one of eos_ids().
  bool is_eos(Token id) const;

  /// A detokenizer that streams the decoding of ids produced one at a time.
  StreamingDetokenizer streaming(bool skip_special = false) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class StreamingDetokenizer;
};

/// Turns ids into text as they arrive, for printing generated text while it
/// is being generated. Never emits broken UTF-8: a partial multi-byte
/// sequence (from byte-level or byte-fallback tokens) is held back until it is
/// complete. Leading-space rules of the decoder (Metaspace, Strip) are applied
/// as for a whole decode, so the concatenation of every piece returned by
/// push() and finish() equals Tokenizer::decode(all ids). Work per push is
/// bounded by the number of tokens since the last emitted boundary. A decoder
/// chain whose output depends on more than the previous token (a Strip of
/// several characters, or a pattern, after a stage that joins tokens: no
/// released tokenizer we know of) cannot be streamed that way: push() then
/// returns nothing and finish() returns the whole text.
/// Not thread-safe (one per sequence); keeps the Tokenizer's tables alive.
class StreamingDetokenizer {
 public:
  /// Shares `tokenizer`'s tables (the Tokenizer object itself need not
  /// outlive it); `skip_special` drops special added tokens, as decode() does.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = false);

  /// Adds one id; returns the text that became final (possibly empty).
  /// Throws InvalidArgument for an id outside the vocabulary.
  std::string push(Token id);
  /// Returns whatever was held back (a trailing incomplete UTF-8 sequence
  /// becomes U+FFFD) and resets the detokenizer for a new sequence.
  std::string finish();
  /// Forgets everything pushed so far without emitting it.
  void reset();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  std::vector<Token> window_;  // ids from the last boundary on
  std::string decoded_;        // raw decoder bytes of window_[0, read_)
  std::string pending_;        // bytes of an incomplete UTF-8 tail, not yet emitted
};

}  // namespace assistgen

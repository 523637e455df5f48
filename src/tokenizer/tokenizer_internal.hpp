// Private pieces of the tokenizer: UTF-8 helpers, the PCRE2 wrapper, the
// pipeline components (normalizers, pre-tokenizers, BPE model, decoders) and
// Tokenizer::Impl. Only src/tokenizer/*.cpp include this (and the tokenizer
// complexity fuzz target, for growth_limit).
#pragma once

#include <assistgen/tokenizer.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace assistgen::tok {

// ---- UTF-8 ------------------------------------------------------------------

/// Replaces every maximal invalid subpart by U+FFFD (the WHATWG / Unicode
/// "substitution of maximal subparts" rule, also used by Rust's
/// from_utf8_lossy and JS TextDecoder), so the result is valid UTF-8.
std::string sanitize_utf8(std::string_view bytes);
/// Length of the trailing bytes of `s` that are a valid but incomplete UTF-8
/// sequence (0..3): they may still become a character when more bytes come.
std::size_t incomplete_utf8_tail(std::string_view s);
/// Byte length of the (valid) UTF-8 character starting with `lead`.
inline std::size_t utf8_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}
/// Decodes the valid UTF-8 character at s[i]; advances i.
char32_t next_code_point(std::string_view s, std::size_t& i);
void append_utf8(std::string& out, char32_t cp);
/// Unicode White_Space (Rust's char::is_whitespace).
bool is_unicode_whitespace(char32_t cp);

/// GPT-2's reversible byte <-> printable character map.
struct ByteLevelTable {
  std::string byte_to_utf8[256];
  std::unordered_map<char32_t, unsigned char> cp_to_byte;
  static const ByteLevelTable& get();
};

// ---- Regex (PCRE2) ------------------------------------------------------------

/// A compiled PCRE2 pattern (UTF + UCP, JIT when available). Immutable and
/// shareable between threads; match data is created per call.
class Regex {
 public:
  /// Throws FormatError naming `where` when the pattern does not compile.
  Regex(std::string_view pattern, const std::string& where);
  /// A literal string pattern (escaped, no regex syntax).
  static Regex literal(std::string_view text, const std::string& where);
  /// Calls f(start, end) for every non-overlapping match, left to right.
  /// The work is linear in the text: each search sees at most
  /// kRegexWindowBytes of text past its start, so a match longer than that
  /// is cut at the window's end (see text.cpp).
  void for_each_match(std::string_view text,
                      const std::function<void(std::size_t, std::size_t)>& f) const;
  /// The file and field the pattern came from, for error messages.
  const std::string& where() const { return where_; }

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  std::string where_;
};

/// The most text one regex search looks at past its start (a pre-token
/// longer than this is split at that length).
inline constexpr std::size_t kRegexWindowBytes = 1024;

// ---- Pipeline components ------------------------------------------------------

/// A normalizer or decoder chain may make its text at most this many times
/// longer (plus kGrowthSlack bytes): NFKC expands a character 18 times at most,
/// a Replace of a space by U+2581 three times.
inline constexpr std::size_t kMaxGrowthFactor = 32;
inline constexpr std::size_t kGrowthSlack = 4096;
inline std::size_t growth_limit(std::size_t input_bytes) {
  return kMaxGrowthFactor * input_bytes + kGrowthSlack;
}
/// Throws the FormatError of a normalizer or decoder (`where`) whose output
/// passed growth_limit(input_bytes).
[[noreturn]] void throw_growth(std::string_view where, std::size_t input_bytes);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;
};

/// A pre-token and whether it starts at offset 0 of the input (Metaspace's
/// prepend_scheme "first" needs that).
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

/// Split behaviours of the Split pre-tokenizer (Rust's SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// Splits every piece at the matches of `re` (or, inverted, at what lies
/// between them) with the given behaviour; drops empty pieces.
void split_pieces(std::vector<Piece>& pieces, const Regex& re, SplitBehavior behavior, bool invert);

/// Decoders transform the list of token strings (raw bytes, not necessarily
/// valid UTF-8) as in the Rust crate's decode_chain.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
  /// Walks the chain for StreamingDetokenizer: `joined` says that an earlier
  /// stage has joined tokens (ByteLevel, ByteFallback runs, Fuse), so this
  /// stage sees text whose token boundaries differ between a short window and
  /// the whole sequence; `local` is cleared when such a stage could then give
  /// a different text (a Strip of more than one leading space, a pattern that
  /// spans tokens), and streaming must decode the whole sequence instead.
  virtual void stream_check(bool& joined, bool& local) const {
    if (joined && !safe_after_join()) local = false;
    if (joins_tokens()) joined = true;
  }

 protected:
  virtual bool joins_tokens() const { return false; }
  virtual bool safe_after_join() const { return false; }
};

std::unique_ptr<Normalizer> make_nfx(int form,
                                     const std::string& where);  // 0 NFC, 1 NFD, 2 NFKC, 3 NFKD
std::unique_ptr<Normalizer> make_lowercase();
std::unique_ptr<Normalizer> make_prepend(std::string prefix);
std::unique_ptr<Normalizer> make_replace_normalizer(Regex pattern, std::string content);
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right);
std::unique_ptr<Normalizer> make_normalizer_sequence(
    std::vector<std::unique_ptr<Normalizer>> items);

std::unique_ptr<PreTokenizer> make_byte_level_pre(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizer> make_split(Regex pattern, SplitBehavior behavior, bool invert);
enum class PrependScheme { always, first, never };
std::unique_ptr<PreTokenizer> make_metaspace_pre(std::string replacement, PrependScheme scheme,
                                                 bool split);
std::unique_ptr<PreTokenizer> make_digits(bool individual);
std::unique_ptr<PreTokenizer> make_pre_sequence(std::vector<std::unique_ptr<PreTokenizer>> items);

std::unique_ptr<Decoder> make_byte_level_decoder();
std::unique_ptr<Decoder> make_metaspace_decoder(std::string replacement, PrependScheme scheme);
std::unique_ptr<Decoder> make_replace_decoder(Regex pattern, std::string content);
std::unique_ptr<Decoder> make_byte_fallback_decoder();
std::unique_ptr<Decoder> make_fuse_decoder();
std::unique_ptr<Decoder> make_strip_decoder(std::string content, std::size_t start,
                                            std::size_t stop);
std::unique_ptr<Decoder> make_bpe_decoder(std::string suffix);
std::unique_ptr<Decoder> make_decoder_sequence(std::vector<std::unique_ptr<Decoder>> items);

// ---- BPE model -----------------------------------------------------------------

/// The BPE model: merges applied by rank with a heap over a linked list of
/// symbols, O(n log n) per word.
struct Bpe {
  std::unordered_map<std::string, Token> vocab;
  /// (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, Token>> merges;
  std::optional<Token> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  Token byte_ids[256];  // id of "<0xXX>" or -1 (byte_fallback)

  /// Appends the ids of one pre-token.
  void encode_word(std::string_view word, std::vector<Token>& out) const;
};

// ---- Added tokens ------------------------------------------------------------------

struct AddedToken {
  std::string content;
  Token id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

/// The longest content of an added token, in bytes (the trie walk per
/// position of encode() is bounded by it).
inline constexpr std::size_t kMaxAddedTokenBytes = 256;

/// A byte trie of the added tokens: node 0 is the root. Built with insert(),
/// then finish() lays the children of each node out contiguously, sorted by
/// byte, so a walk step is a short scan (one compare along a chain).
class AddedTrie {
 public:
  void insert(std::string_view content, std::int32_t index) {
    if (build_.empty()) build_.emplace_back();
    std::uint32_t node = 0;
    for (const char c : content) {
      const auto b = static_cast<unsigned char>(c);
      auto it = build_[node].children.find(b);
      if (it == build_[node].children.end()) {
        const auto child = static_cast<std::uint32_t>(build_.size());
        build_[node].children.emplace(b, child);
        build_.emplace_back();
        node = child;
      } else {
        node = it->second;
      }
    }
    build_[node].token = index;
  }
  void finish() {
    token_.resize(build_.size());
    first_.resize(build_.size() + 1);
    edges_.clear();
    for (std::size_t n = 0; n < build_.size(); ++n) {
      token_[n] = build_[n].token;
      first_[n] = static_cast<std::uint32_t>(edges_.size());
      for (const auto& [b, child] : build_[n].children) edges_.push_back({b, child});
    }
    first_[build_.size()] = static_cast<std::uint32_t>(edges_.size());
    build_.clear();
    build_.shrink_to_fit();
  }
  /// Appends to `hits` the indices of the tokens that are prefixes of `text`,
  /// shortest first.
  void prefixes(std::string_view text, std::vector<std::int32_t>& hits) const {
    if (token_.empty()) return;
    std::uint32_t node = 0;
    for (const char c : text) {
      const auto b = static_cast<unsigned char>(c);
      const Edge* e = edges_.data() + first_[node];
      const Edge* end = edges_.data() + first_[node + 1];
      if (end - e > 8) {
        e = std::lower_bound(e, end, b, [](const Edge& x, unsigned char v) { return x.byte < v; });
      } else {
        while (e != end && e->byte < b) ++e;
      }
      if (e == end || e->byte != b) return;
      node = e->child;
      if (token_[node] >= 0) hits.push_back(token_[node]);
    }
  }

 private:
  struct BuildNode {
    std::int32_t token = -1;
    std::map<unsigned char, std::uint32_t> children;
  };
  struct Edge {
    unsigned char byte;
    std::uint32_t child;
  };
  std::vector<BuildNode> build_;
  std::vector<std::int32_t> token_;   // per node: added-token index or -1
  std::vector<std::uint32_t> first_;  // per node: its first edge; one past the last node at the end
  std::vector<Edge> edges_;
};

}  // namespace assistgen::tok

namespace assistgen {

struct Tokenizer::Impl {
  std::string origin;
  tok::Bpe model;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Decoder> decoder;
  /// The decoder chain cannot be streamed with a two-token window (see
  /// Decoder::stream_check): StreamingDetokenizer then holds the text back
  /// until finish(), so that it still equals decode().
  bool stream_whole = false;
  std::vector<Token> post_prefix;  // added before the sequence when add_special_tokens
  std::vector<Token> post_suffix;  // added after it

  std::vector<tok::AddedToken> added;
  /// A byte trie of the added tokens' contents: matching at one position
  /// walks at most kMaxAddedTokenBytes nodes whatever the number of added
  /// tokens, so encode() is linear in the text.
  tok::AddedTrie added_trie;

  std::vector<std::string> id_to_token;  // "" with present=false for holes
  std::vector<std::uint8_t> present;
  std::vector<std::uint8_t> special;
  std::unordered_map<std::string, Token> added_to_id;

  std::optional<Token> bos;
  std::vector<Token> eos;

  /// Decoder output for `ids` before the final UTF-8 repair.
  std::string raw_decode(std::span<const Token> ids) const;
  void check_id(Token id) const;
};

}  // namespace assistgen

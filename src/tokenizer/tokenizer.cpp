// Tokenizer::encode / decode and the streaming detokenizer.
#include <utf8proc.h>

#include <assistgen/error.hpp>

#include "tokenizer_internal.hpp"

namespace assistgen {

namespace {

using tok::next_code_point;

// Start of the character that ends just before s[end].
std::size_t prev_char_start(std::string_view s, std::size_t end) {
  std::size_t k = end - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return k;
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

}  // namespace

void Tokenizer::Impl::check_id(Token id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= present.size() || !present[id])
    throw InvalidArgument(origin + ": token id " + std::to_string(id) +
                          " is not in the vocabulary (size " + std::to_string(present.size()) +
                          ")");
}

std::string Tokenizer::Impl::raw_decode(std::span<const Token> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (Token id : ids) tokens.push_back(id_to_token[id]);
  std::string out;
  if (!decoder) {
    // No decoder: the Rust crate joins the tokens with spaces.
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  decoder->apply(tokens);
  for (const auto& t : tokens) out += t;
  return out;
}

std::vector<Token> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& m = *impl_;
  const std::string s = tok::sanitize_utf8(text);
  std::vector<Token> out;
  out.reserve(s.size() / 3 + 4);
  if (options.add_special_tokens) out = m.post_prefix;

  // The normalizer's growth is bounded over the whole text, not per segment:
  // many short segments between added tokens would each get the slack.
  std::size_t normalized_bytes = 0;
  auto encode_segment = [&](std::size_t b, std::size_t e) {
    if (b >= e) return;
    std::string seg = s.substr(b, e - b);
    if (m.normalizer) {
      m.normalizer->apply(seg);
      normalized_bytes += seg.size();
      if (normalized_bytes > tok::growth_limit(s.size())) tok::throw_growth("normalizer", s.size());
    }
    if (seg.empty()) return;
    std::vector<tok::Piece> pieces;
    pieces.push_back({std::move(seg), b == 0});
    if (m.pre_tokenizer) m.pre_tokenizer->apply(pieces);
    for (const auto& p : pieces) m.model.encode_word(p.text, out);
  };

  // Special tokens overlapping a literal range (user text) are not matched.
  auto in_literal = [&](std::size_t b, std::size_t e) {
    for (const ByteRange& r : options.literal_ranges)
      if (r.begin < e && b < r.end) return true;
    return false;
  };

  // Added tokens are matched leftmost-longest on the raw text; the text
  // between them goes through normalizer, pre-tokenizer and model.
  std::size_t seg_start = 0;
  std::size_t i = 0;
  const bool any_added = !m.added.empty();
  std::vector<std::int32_t> prefixes;
  while (any_added && i < s.size()) {
    const tok::AddedToken* hit = nullptr;
    prefixes.clear();
    m.added_trie.prefixes(std::string_view(s).substr(i, tok::kMaxAddedTokenBytes), prefixes);
    // Longest first: the first that qualifies wins.
    for (auto it = prefixes.rbegin(); it != prefixes.rend(); ++it) {
      const tok::AddedToken& a = m.added[static_cast<std::size_t>(*it)];
      if (a.special && !options.parse_special) continue;
      if (a.special && in_literal(i, i + a.content.size())) continue;
      if (a.single_word) {
        if (i > 0) {
          std::size_t k = prev_char_start(s, i);
          if (is_word_char(next_code_point(s, k))) continue;
        }
        std::size_t k = i + a.content.size();
        if (k < s.size() && is_word_char(next_code_point(s, k))) continue;
      }
      hit = &a;
      break;
    }
    if (hit == nullptr) {
      i += tok::utf8_len(static_cast<unsigned char>(s[i]));
      continue;
    }
    std::size_t seg_end = i;
    if (hit->lstrip) {
      while (seg_end > seg_start) {
        std::size_t k = prev_char_start(s, seg_end), j = k;
        if (!tok::is_unicode_whitespace(next_code_point(s, j))) break;
        seg_end = k;
      }
    }
    encode_segment(seg_start, seg_end);
    out.push_back(hit->id);
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < s.size()) {
        std::size_t j = i;
        if (!tok::is_unicode_whitespace(next_code_point(s, j))) break;
        i = j;
      }
    }
    seg_start = i;
  }
  encode_segment(seg_start, s.size());
  if (options.add_special_tokens) out.insert(out.end(), m.post_suffix.begin(), m.post_suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const Token> ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::vector<Token> kept;
  kept.reserve(ids.size());
  for (Token id : ids) {
    m.check_id(id);
    if (skip_special && m.special[id]) continue;
    kept.push_back(id);
  }
  return tok::sanitize_utf8(m.raw_decode(kept));
}

std::size_t Tokenizer::vocab_size() const { return impl_->present.size(); }

std::optional<Token> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = impl_->added_to_id.find(key); it != impl_->added_to_id.end()) return it->second;
  if (auto it = impl_->model.vocab.find(key); it != impl_->model.vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(Token id) const {
  impl_->check_id(id);
  return impl_->id_to_token[id];
}

std::optional<Token> Tokenizer::bos_id() const { return impl_->bos; }

std::vector<Token> Tokenizer::eos_ids() const { return impl_->eos; }

bool Tokenizer::is_special(Token id) const {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->special.size() && impl_->special[id] != 0;
}

bool Tokenizer::is_eos(Token id) const {
  for (Token e : impl_->eos)
    if (e == id) return true;
  return false;
}

StreamingDetokenizer Tokenizer::streaming(bool skip_special) const {
  return StreamingDetokenizer(*this, skip_special);
}

// ---- StreamingDetokenizer -------------------------------------------------------------
//
// The window always starts with the token before the newest one, so the
// decoder sees the same left context in both decodes it compares: rules that
// touch only the start of the text (Metaspace/Strip dropping a leading space)
// apply equally to both, and the difference is exactly the new token's text.
// That holds for the chains Decoder::stream_check accepts; for the others
// (Impl::stream_whole) push() only collects ids and finish() decodes them all.

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : impl_(tokenizer.impl_), skip_special_(skip_special) {}

std::string StreamingDetokenizer::push(Token id) {
  impl_->check_id(id);
  if (skip_special_ && impl_->special[id]) return {};
  window_.push_back(id);
  // A chain whose output depends on more than the previous token (e.g. Strip
  // of two spaces after ByteFallback) is decoded whole at finish().
  if (impl_->stream_whole) return {};
  const std::string full = impl_->raw_decode(window_);
  if (full.compare(0, decoded_.size(), decoded_) != 0) {
    // The decoder rewrote text it had already produced; wait for more tokens
    // (or finish()) rather than emit something that may be taken back.
    return {};
  }
  pending_.append(full, decoded_.size(), std::string::npos);
  if (window_.size() > 1) window_.erase(window_.begin(), window_.end() - 1);
  decoded_ = impl_->raw_decode(window_);
  const std::size_t keep = tok::incomplete_utf8_tail(pending_);
  std::string out =
      tok::sanitize_utf8(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamingDetokenizer::finish() {
  if (!window_.empty()) {
    const std::string full = impl_->raw_decode(window_);
    std::size_t common = 0;
    while (common < full.size() && common < decoded_.size() && full[common] == decoded_[common])
      ++common;
    pending_.append(full, common, std::string::npos);
  }
  std::string out = tok::sanitize_utf8(pending_);
  reset();
  return out;
}

void StreamingDetokenizer::reset() {
  window_.clear();
  decoded_.clear();
  pending_.clear();
}

}  // namespace assistgen

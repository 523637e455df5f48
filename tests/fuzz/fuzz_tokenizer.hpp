// Invariants of a loaded Tokenizer, checked by both tokenizer fuzz targets.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/tokenizer.hpp"
#include "fuzz_common.hpp"

namespace fuzz {

/// Decodes `ids` whole and through a StreamingDetokenizer and checks that the
/// two agree and are valid UTF-8. Ids outside the vocabulary must be an
/// InvalidArgument from both. Returns the decoded text (empty on rejection).
inline std::string check_decode(const assistgen::Tokenizer& tok, const std::vector<assistgen::Token>& ids,
                                bool skip_special) {
  bool all_known = true;
  for (const auto id : ids) {
    try {
      (void)tok.id_to_token(id);
    } catch (const assistgen::InvalidArgument&) {
      all_known = false;
    }
  }
  std::string whole;
  try {
    whole = tok.decode(ids, skip_special);
  } catch (const assistgen::InvalidArgument&) {
    FUZZ_CHECK(!all_known, "decode rejected ids that id_to_token knows");
  }
  if (!all_known) return {};
  FUZZ_CHECK(valid_utf8(whole), "decode returned invalid UTF-8");
  assistgen::StreamingDetokenizer stream = tok.streaming(skip_special);
  std::string pieces;
  for (const auto id : ids) {
    const std::string piece = stream.push(id);
    FUZZ_CHECK(valid_utf8(piece), "streaming piece is invalid UTF-8");
    pieces += piece;
  }
  pieces += stream.finish();
  FUZZ_CHECK(pieces == whole, "streaming decode differs from decode");
  return whole;
}

/// Encodes `text` and checks that the ids are in the vocabulary and decode
/// consistently. encode() must never throw.
inline std::vector<assistgen::Token> check_encode(const assistgen::Tokenizer& tok, std::string_view text,
                                                  const assistgen::EncodeOptions& options) {
  const std::vector<assistgen::Token> ids = tok.encode(text, options);
  for (const auto id : ids)
    FUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < tok.vocab_size(), "encode gave an id out of range");
  check_decode(tok, ids, false);
  check_decode(tok, ids, true);
  return ids;
}

}  // namespace fuzz

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
/// InvalidArgument from both (and only then may either throw). Returns the
/// decoded text (empty on rejection).
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
  bool rejected = false;
  try {
    whole = tok.decode(ids, skip_special);
  } catch (const assistgen::InvalidArgument&) {
    rejected = true;
  }
  FUZZ_CHECK(rejected == !all_known, "decode accepted an unknown id or rejected only known ones");
  assistgen::StreamingDetokenizer stream = tok.streaming(skip_special);
  if (!all_known) {
    // The stream rejects the first unknown id it is given, and nothing else.
    bool stream_rejected = false;
    for (const auto id : ids) {
      try {
        (void)stream.push(id);
      } catch (const assistgen::InvalidArgument&) {
        stream_rejected = true;
        break;
      }
    }
    FUZZ_CHECK(stream_rejected, "streaming push accepted an id outside the vocabulary");
    return {};
  }
  FUZZ_CHECK(valid_utf8(whole), "decode returned invalid UTF-8");
  std::string pieces;
  for (const auto id : ids) {
    std::string piece;
    FUZZ_NOTHROW(piece = stream.push(id), "streaming push threw on a known id");
    FUZZ_CHECK(valid_utf8(piece), "streaming piece is invalid UTF-8");
    pieces += piece;
  }
  std::string tail;
  FUZZ_NOTHROW(tail = stream.finish(), "streaming finish threw");
  pieces += tail;
  FUZZ_CHECK(pieces == whole, "streaming decode differs from decode");
  return whole;
}

/// Encodes `text` and checks that the ids are in the vocabulary and decode
/// consistently. encode() must never throw: a throw aborts (FUZZ_NOTHROW),
/// so callers must not run this inside a catch of assistgen::Error.
inline std::vector<assistgen::Token> check_encode(const assistgen::Tokenizer& tok, std::string_view text,
                                                  const assistgen::EncodeOptions& options) {
  std::vector<assistgen::Token> ids;
  FUZZ_NOTHROW(ids = tok.encode(text, options), "encode threw");
  for (const auto id : ids)
    FUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < tok.vocab_size(), "encode gave an id out of range");
  check_decode(tok, ids, false);
  check_decode(tok, ids, true);
  return ids;
}

}  // namespace fuzz

// Fuzz target: encode / decode of arbitrary bytes with the golden tokenizers
// of tests/data/tokenizers. Byte 0 selects the tokenizer (bits 0-1), the
// encode options (bits 2-3) and the mode (bits 4-5); the rest is the payload:
//   mode 0, 1  encode the payload as text; for the byte-level tokenizers
//              (gpt2, llama3) decode(encode(text)) must give back the text,
//              repaired to valid UTF-8, when no special tokens are involved;
//   mode 2     decode the payload read as little-endian int32 ids (out of
//              range ids included: they must be InvalidArgument);
//   mode 3     the same with ids folded into [-1, vocab_size], so that most
//              are valid.
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_tokenizer.hpp"

#ifndef ASSISTGEN_TEST_DATA_DIR
#error "ASSISTGEN_TEST_DATA_DIR must name tests/data"
#endif

namespace {

const std::array<assistgen::Tokenizer, 4>& tokenizers() {
  static const std::array<assistgen::Tokenizer, 4> all = {
      assistgen::Tokenizer::load(ASSISTGEN_TEST_DATA_DIR "/tokenizers/gpt2-8k"),
      assistgen::Tokenizer::load(ASSISTGEN_TEST_DATA_DIR "/tokenizers/llama3-8k"),
      assistgen::Tokenizer::load(ASSISTGEN_TEST_DATA_DIR "/tokenizers/spm-bf"),
      assistgen::Tokenizer::load(ASSISTGEN_TEST_DATA_DIR "/tokenizers/spm-bf-metaspace"),
  };
  return all;
}

// Repairs invalid UTF-8 the way the tokenizer promises to: one U+FFFD per
// maximal invalid subpart. Written independently of the library's code.
std::string repair_utf8(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned char c = b(i);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    std::size_t k = 1;
    if (need != 0) {
      for (; k <= need && i + k < s.size(); ++k) {
        const unsigned char d = b(i + k);
        const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (d < l || d > h) break;
      }
    }
    if (need != 0 && k == need + 1) {
      out.append(s.substr(i, k));
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += k;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& toks = tokenizers();
  const unsigned sel = data[0];
  const std::size_t which = sel & 3u;
  const assistgen::Tokenizer& tok = toks[which];
  const assistgen::EncodeOptions options{.add_special_tokens = (sel & 4u) != 0, .parse_special = (sel & 8u) != 0};
  const unsigned mode = (sel >> 4) & 3u;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  if (mode <= 1) {
    const auto ids = fuzz::check_encode(tok, payload, options);
    if (which <= 1 && !options.add_special_tokens) {
      bool special = false;
      for (const auto id : ids) special = special || tok.is_special(id);
      if (!special) {
        const std::string text = tok.decode(ids);
        FUZZ_CHECK(text == repair_utf8(payload), "byte-level decode(encode(text)) != text");
      }
    }
    return 0;
  }
  std::vector<assistgen::Token> ids(payload.size() / 4);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::uint32_t raw;
    std::memcpy(&raw, payload.data() + 4 * i, 4);
    if (mode == 3) {
      ids[i] = static_cast<assistgen::Token>(raw % (tok.vocab_size() + 2)) - 1;
    } else {
      ids[i] = static_cast<assistgen::Token>(raw);
    }
  }
  fuzz::check_decode(tok, ids, (sel & 64u) != 0);
  return 0;
}

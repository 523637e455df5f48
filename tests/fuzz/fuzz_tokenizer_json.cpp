// Fuzz target: Tokenizer::from_json on arbitrary text. The input is split at
// NUL bytes (which JSON text cannot contain): tokenizer.json, then
// tokenizer_config.json, then generation_config.json. Bad input must be an
// assistgen::Error from from_json(); a tokenizer that loads must encode and
// decode a few strings consistently, and nothing after loading may throw.
#include <optional>
#include <string_view>

#include "fuzz_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view parts[3];
  std::size_t start = 0;
  for (int i = 0; i < 3 && start <= input.size(); ++i) {
    const std::size_t nul = i < 2 ? input.find('\0', start) : std::string_view::npos;
    const std::size_t end = nul == std::string_view::npos ? input.size() : nul;
    parts[i] = input.substr(start, end - start);
    start = end + 1;
  }
  // Only loading may fail (an assistgen::Error names the problem); once a
  // tokenizer loads, every check below aborts on violation, exceptions included.
  std::optional<assistgen::Tokenizer> loaded;
  try {
    loaded.emplace(assistgen::Tokenizer::from_json(parts[0], parts[1], parts[2], "fuzz/tokenizer.json"));
  } catch (const assistgen::Error&) {
    return 0;
  }
  const assistgen::Tokenizer& tok = *loaded;
  FUZZ_NOTHROW((void)tok.vocab_size(), "vocab_size threw");
  FUZZ_NOTHROW((void)tok.bos_id(), "bos_id threw");
  FUZZ_NOTHROW((void)tok.eos_ids(), "eos_ids threw");
  for (const char* text : {"Hello world", " a  b\n\tc ", "\xC3\xA9t\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80",
                           "\xFF\xC0 bad", "<s></s><unk><|endoftext|>"}) {
    fuzz::check_encode(tok, text, {});
    fuzz::check_encode(tok, text, {.add_special_tokens = false, .parse_special = true});
  }
  return 0;
}

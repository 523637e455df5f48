// Fuzz target: ModelConfig::parse (config.json text). Bad input must be a
// ConfigError or UnsupportedError from parse(); an accepted config must
// satisfy what validate() promises, and validate() must accept it again.
// Only parse() runs inside the try: a throw from validate() on a config that
// parse() accepted is a finding, and so aborts like a broken FUZZ_CHECK.
#include <optional>
#include <string_view>

#include "assistgen/model_config.hpp"
#include "assistgen/error.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<assistgen::ModelConfig> parsed;
  try {
    parsed = assistgen::ModelConfig::parse(text, "fuzz/config.json");
  } catch (const assistgen::ConfigError&) {
    return 0;  // the documented outcomes for bad input
  } catch (const assistgen::UnsupportedError&) {
    return 0;
  }
  const assistgen::ModelConfig& c = *parsed;
  FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0, "zero size");
  FUZZ_CHECK(c.num_hidden_layers > 0 && c.num_hidden_layers <= 1024, "layer count");
  FUZZ_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0, "zero heads");
  FUZZ_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, "kv heads must divide heads");
  FUZZ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim");
  for (const auto id : c.eos_token_ids)
    FUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < c.vocab_size, "eos id out of range");
  for (const auto id : c.bos_token_ids)
    FUZZ_CHECK(id >= 0 && static_cast<std::size_t>(id) < c.vocab_size, "bos id out of range");
  FUZZ_NOTHROW(c.validate("fuzz/config.json"), "validate() rejected a config parse() accepted");
  return 0;
}

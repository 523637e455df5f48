// Fuzz target: the limits of the library's one JSON reader (depth, size,
// duplicate keys) through every public entry point that parses JSON text:
// config.json, generation_config.json, tokenizer.json (and its two side
// files) and a safetensors header. The first byte chooses the consumer and an
// amplifier: the text can be wrapped in up to 2^20 levels of [ ], { "k": },
// or a tokenizer Sequence, so that small inputs reach hostile nesting depths.
// Anything but an assistgen::Error is a finding; a libFuzzer -timeout or
// -rss_limit_mb report is one too (the reader is meant to be linear).
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include "assistgen/model_config.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/io/safetensors.hpp"
#include "assistgen/tokenizer.hpp"
#include "fuzz_common.hpp"

namespace {

constexpr std::string_view kTokenizer =
    R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},)"
    R"("added_tokens":[{"id":3,"content":"<eos>","special":true}]})";

// Wraps `inner` in `depth` levels of the chosen kind.
std::string amplify(std::string_view inner, unsigned kind, std::size_t depth) {
  static constexpr std::string_view kOpen[] = {"[", "{\"k\":", "{\"type\":\"Sequence\",\"normalizers\":[",
                                               "{\"type\":\"Sequence\",\"decoders\":["};
  static constexpr std::string_view kClose[] = {"]", "}", "]}", "]}"};
  std::string out;
  out.reserve(depth * (kOpen[kind].size() + kClose[kind].size()) + inner.size());
  for (std::size_t i = 0; i < depth; ++i) out += kOpen[kind];
  out += inner;
  for (std::size_t i = 0; i < depth; ++i) out += kClose[kind];
  return out;
}

void parse_safetensors(const std::string& header) {
  const int fd = static_cast<int>(::memfd_create("fuzz.safetensors", MFD_CLOEXEC));
  FUZZ_CHECK(fd >= 0, "memfd_create failed");
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<char>((static_cast<std::uint64_t>(header.size()) >> (8 * i)) & 0xff);
  bytes += header;
  bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  try {
    if (ok) assistgen::io::SafetensorsFile f("/proc/self/fd/" + std::to_string(fd));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  FUZZ_CHECK(ok, "write failed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const unsigned consumer = data[0] % 6;
  const unsigned kind = (data[0] >> 3) % 4;
  // Depth up to 2^20 from two bytes (the high ones are rare, the low common).
  const std::size_t depth = data[0] & 0x80 ? (std::size_t{data[1]} << 12) | (std::size_t{data[2]} << 4) : data[1] % 80;
  const std::string_view body(reinterpret_cast<const char*>(data) + 3, size - 3);
  const std::string text = depth > 0 ? amplify(body, kind, depth) : std::string(body);
  try {
    switch (consumer) {
      case 0:
        (void)assistgen::ModelConfig::parse(text, "fuzz/config.json");
        break;
      case 1:
        (void)assistgen::GenerateOptions::parse_generation_config(text, "fuzz/generation_config.json");
        break;
      case 2:
        (void)assistgen::Tokenizer::from_json(text, "", "", "fuzz/tokenizer.json");
        break;
      case 3:
        (void)assistgen::Tokenizer::from_json(kTokenizer, text, "", "fuzz/tokenizer.json");
        break;
      case 4:
        (void)assistgen::Tokenizer::from_json(kTokenizer, "", text, "fuzz/tokenizer.json");
        break;
      default:
        parse_safetensors(text);
        break;
    }
  } catch (const assistgen::Error& e) {
    // Messages are one line whatever the input held.
    for (const char* p = e.what(); *p != '\0'; ++p)
      FUZZ_CHECK(static_cast<unsigned char>(*p) >= 0x20 && *p != 0x7F, "control character in a message");
  }
  return 0;
}

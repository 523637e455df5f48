// Fuzz target: tokenizers built to be slow. The input names, separated by
// NUL bytes: a Split pre-tokenizer regex, a list of added tokens (separated
// by \x01), a Replace normalizer's pattern and content (separated by \x01),
// a Replace decoder's pattern and content, and a prompt. The first byte sets
// how many times the normalizer and decoder are chained (up to 32) and how
// many times the prompt is repeated (up to 2^14), so small inputs reach long
// prompts and multiplying chains. The tokenizer then encodes the prompt and
// decodes the ids. Bad input may only end in an assistgen::Error; run with a
// small -timeout so that super-linear work is a finding.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "assistgen/error.hpp"
#include "assistgen/tokenizer.hpp"
#include "../../src/tokenizer/tokenizer_internal.hpp"  // private: growth_limit
#include "fuzz_common.hpp"

namespace {

std::vector<std::string_view> split(std::string_view s, char sep, std::size_t max_parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_parts) {
    const std::size_t at = s.find(sep);
    if (at == std::string_view::npos) break;
    out.push_back(s.substr(0, at));
    s.remove_prefix(at + 1);
  }
  out.push_back(s);
  return out;
}

// JSON strings must be valid UTF-8; the library's own repair is not under test here.
std::string utf8(std::string_view s) {
  std::string out;
  for (const char c : s) out += static_cast<unsigned char>(c) < 0x80 ? c : '?';
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using nlohmann::json;
  const unsigned chain = 1 + (data[0] & 31);
  const std::size_t repeat = std::size_t{1} << ((data[0] >> 5) * 2);  // 1, 4, ..., 2^14
  const auto parts = split(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), '\0', 5);
  auto part = [&](std::size_t i) { return i < parts.size() ? parts[i] : std::string_view(); };

  json vocab = json::object();
  for (int b = 0x20; b < 0x7F; ++b) vocab[std::string(1, static_cast<char>(b))] = b - 0x20;
  json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  if (!part(0).empty())
    j["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"Regex", utf8(part(0))}}},
                          {"behavior", "Isolated"},
                          {"invert", false}};
  json added = json::array();
  int id = 0x7F - 0x20;
  for (const auto a : split(part(1), '\x01', 64))
    if (!a.empty()) added.push_back({{"id", id++}, {"content", utf8(a)}, {"special", (id & 1) != 0}});
  j["added_tokens"] = added;
  const auto norm = split(part(2), '\x01', 2);
  if (norm.size() == 2) {
    json seq = json::array();
    for (unsigned i = 0; i < chain; ++i)
      seq.push_back({{"type", "Replace"}, {"pattern", {{"String", utf8(norm[0])}}}, {"content", utf8(norm[1])}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", seq}};
  }
  const auto dec = split(part(3), '\x01', 2);
  if (dec.size() == 2) {
    json seq = json::array();
    for (unsigned i = 0; i < chain; ++i)
      seq.push_back({{"type", "Replace"}, {"pattern", {{"Regex", utf8(dec[0])}}}, {"content", utf8(dec[1])}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", seq}};
  }
  std::string prompt;
  const std::string_view unit = part(4);
  prompt.reserve(unit.size() * repeat);
  for (std::size_t i = 0; i < repeat && prompt.size() < (std::size_t{1} << 18); ++i) prompt += unit;
  try {
    const auto tok = assistgen::Tokenizer::from_json(j.dump(), "", "", "fuzz/tokenizer.json");
    const auto ids = tok.encode(prompt, {.add_special_tokens = false, .parse_special = true});
    // At most one id per byte of the normalized text, which the normalizer
    // chain may make growth_limit(prompt) bytes long, not more.
    FUZZ_CHECK(ids.size() <= assistgen::tok::growth_limit(prompt.size()),
               "more ids than the normalized text allows");
    for (const auto t : ids) FUZZ_CHECK(t >= 0 && static_cast<std::size_t>(t) < tok.vocab_size(), "id out of range");
    const std::string text = tok.decode(ids, false);
    FUZZ_CHECK(fuzz::valid_utf8(text), "decode returned invalid UTF-8");
  } catch (const assistgen::Error&) {
  }
  return 0;
}

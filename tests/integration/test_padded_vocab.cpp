// Padded vocabularies (issue 18): a target whose embedding has more rows than
// its tokenizer has tokens (Qwen2.5-7B: 152,064 logits, Qwen2.5-0.5B:
// 151,936, one tokenizer) paired with a draft of the same tokenizer takes the
// direct path (ids shared), with the padding rows masked; only a real
// tokenizer difference takes the universal path. Tested with a copy of the
// demo target padded at test time to 4160 rows (64 zero rows in its
// embedding and LM head), through the C++ API, the text API and the CLI.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "assistgen/assistgen.hpp"
#include "assistgen/io/safetensors.hpp"
#include "integration/shell_run.hpp"
#include "integration/text_fixtures.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

const fs::path kDemo = ASSISTGEN_MODELS_DIR;
constexpr std::size_t kPad = 64;

/// models/kjv-target with `kPad` zero rows appended to its embedding and LM
/// head and config.json's vocab_size raised to match; made once per process.
const fs::path& padded_target() {
  static const fs::path dir = [] {
    const fs::path src = kDemo / "kjv-target";
    const fs::path dst = text_fixtures::scratch() / "kjv-target-padded";
    fs::create_directories(dst);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
      fs::copy_file(src / f, dst / f, fs::copy_options::overwrite_existing);
    nlohmann::json cfg = nlohmann::json::parse(std::ifstream(src / "config.json"));
    const std::size_t rows = cfg["vocab_size"].get<std::size_t>() + kPad;
    cfg["vocab_size"] = rows;
    std::ofstream(dst / "config.json") << cfg.dump(2);
    const io::SafetensorsFile in(src / "model.safetensors");
    std::vector<std::vector<std::byte>> padded;
    padded.reserve(2);
    std::vector<io::TensorView> out;
    for (const std::string& name : in.names()) {
      io::TensorView t = in.tensor(name);
      if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
        const std::size_t row_bytes = t.data.size() / static_cast<std::size_t>(t.shape[0]);
        std::vector<std::byte>& bytes = padded.emplace_back(t.data.begin(), t.data.end());
        bytes.resize(bytes.size() + kPad * row_bytes, std::byte{0});
        t.data = bytes;
        t.shape[0] = static_cast<std::int64_t>(rows);
      }
      out.push_back(t);
    }
    io::write_safetensors(dst / "model.safetensors", out);
    return dst;
  }();
  return dir;
}

const std::string kText = "And God said";

}  // namespace

TEST_CASE("padded vocabulary: the same tokenizer shares ids, the padding rows masked",
          "[padded_vocab]") {
  const Model padded = load_model(padded_target());
  const Model original = load_model(kDemo / "kjv-target");
  const Model draft = load_model(kDemo / "kjv-draft");
  REQUIRE(padded.backend().vocab_size() == draft.backend().vocab_size() + kPad);
  REQUIRE(padded.masked_tokens().size() == kPad);
  REQUIRE(padded.masked_tokens().front() == static_cast<Token>(draft.backend().vocab_size()));

  const auto [path, why] = padded.pairing(draft);
  INFO(why);
  REQUIRE(path == Assistance::draft);
  REQUIRE(why.find("same tokenizer (4096 tokens)") != std::string::npos);
  REQUIRE(why.find("64 extra rows are padding") != std::string::npos);
  REQUIRE(original.pairing(draft).first == Assistance::draft);
  // The other way round (a padded draft): its extra rows are ignored.
  REQUIRE(draft.pairing(padded).first == Assistance::draft);
  REQUIRE(draft.pairing(padded).second.find("extra rows are ignored") != std::string::npos);

  // Greedy: the target's own output, through the direct path.
  const GenerateOptions greedy{.max_new_tokens = 40};
  const TextResult plain = original.generate(kText, greedy);
  const TextResult r = padded.generate(kText, draft, greedy);
  REQUIRE(r.assistance == Assistance::draft);
  REQUIRE(r.assistance_reason == why);
  REQUIRE(r.tokens == plain.tokens);
  REQUIRE(r.text == plain.text);
  REQUIRE(r.stats.accepted > 0);
  REQUIRE(padded.generate(kText, greedy).tokens == plain.tokens);

  // Sampling: the padding rows have probability 0 on both sides, so a seed
  // gives the very tokens the unpadded pair gives.
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    const GenerateOptions s{
        .max_new_tokens = 24, .do_sample = true, .temperature = 1.3f, .seed = seed};
    const TextResult a = padded.generate(kText, draft, s);
    REQUIRE(a.assistance == Assistance::draft);
    REQUIRE(a.tokens == original.generate(kText, draft, s).tokens);
    for (const Token t : a.tokens)
      REQUIRE(static_cast<std::size_t>(t) < draft.backend().vocab_size());
  }
}

TEST_CASE("padded vocabulary: the C++ API pairs a smaller draft only with the padding suppressed",
          "[padded_vocab]") {
  const cpu::Transformer target = cpu::Transformer::load(padded_target());
  const cpu::Transformer draft = cpu::Transformer::load(kDemo / "kjv-draft");
  GenerationConfig cfg{.max_new_tokens = 20};
  REQUIRE_THROWS_WITH(SpeculativeDecoder(draft, target, cfg),
                      Catch::Contains("target token 4096 is not suppressed"));
  for (std::size_t id = 4096; id < 4096 + kPad; ++id)
    cfg.suppress_tokens.push_back(static_cast<Token>(id));
  SpeculativeDecoder dec(draft, target, cfg);
  const std::vector<Token> prompt{12, 400, 77, 1000};
  REQUIRE(dec.generate(prompt).tokens == generate_autoregressive(target, prompt, cfg).tokens);
  // A row the draft lacks that is not padding (suppression stops one short).
  cfg.suppress_tokens.pop_back();
  REQUIRE_THROWS_AS(SpeculativeDecoder(draft, target, cfg), CompatibilityError);
}

TEST_CASE("padded vocabulary: the CLI takes the direct path in both modes and says why",
          "[padded_vocab][cli]") {
  const std::string target = padded_target().string(), draft = (kDemo / "kjv-draft").string();
  const std::string alone = (kDemo / "kjv-target").string();
  const auto plain = shell_test::cli("generate -m " + alone + " --tokens 12,400,77,1000 -n 24");
  REQUIRE(plain.code == 0);
  const auto ids =
      shell_test::cli("generate -m " + target + " -a " + draft + " --tokens 12,400,77,1000 -n 24");
  INFO(ids.out);
  REQUIRE(ids.code == 0);
  REQUIRE(ids.out.substr(0, ids.out.find('\n')) == plain.out.substr(0, plain.out.find('\n')));
  REQUIRE(
      ids.out.find(
          "assistance: draft (same tokenizer (4096 tokens); target 4160 logit rows, draft 4096") !=
      std::string::npos);
  const auto text =
      shell_test::cli("generate -m " + target + " -a " + draft + " -p '" + kText + "' -n 24");
  INFO(text.out);
  REQUIRE(text.code == 0);
  REQUIRE(text.out.find("64 extra rows are padding, masked") != std::string::npos);
}

TEST_CASE("padded vocabulary: batched generation pairs through Model::pairing as generate() does",
          "[padded_vocab]") {
  const Model padded = load_model(padded_target());
  const Model draft = load_model(kDemo / "kjv-draft");
  REQUIRE(padded.pairing(draft).first == Assistance::draft);
  // The batched engine takes the direct path too (draft steps batched), not
  // the universal one, and each request equals generate() alone.
  REQUIRE(TextBatchEngine(padded, &draft).assistance() == Assistance::draft);
  std::vector<BatchRequest> q(3);
  q[0].prompt = kText;
  q[0].options = {.max_new_tokens = 30};
  q[1].prompt = "In the beginning";
  q[1].options = {.max_new_tokens = 20, .do_sample = true, .temperature = 1.3f, .seed = 5};
  q[2].prompt = "And the LORD";
  q[2].options = {.max_new_tokens = 25, .num_assistant_tokens = 3};
  const BatchTextResult r = padded.generate_batch(q, &draft, {.max_batch = 3});
  for (std::size_t i = 0; i < q.size(); ++i) {
    INFO("request " << i);
    REQUIRE_FALSE(r.errors[i]);
    const TextResult alone = padded.generate(q[i].prompt, draft, q[i].options);
    REQUIRE(r.results[i].assistance == Assistance::draft);
    REQUIRE(r.results[i].tokens == alone.tokens);
    REQUIRE(r.results[i].text == alone.text);
  }
  REQUIRE(r.stats.draft_calls > 0);
}

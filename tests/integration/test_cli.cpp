// The assistgen CLI end to end: logits as .npy, plain and assisted generate
// giving identical greedy ids, text in / text out (-p) with the same text as
// the library's Model::generate, tokenize, and one-line errors with non-zero
// exit codes.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/generate.hpp"
#include "assistgen/autoregressive.hpp"
#include "integration/text_fixtures.hpp"
#include "integration/shell_run.hpp"
#include "test_skip.hpp"

namespace fs = std::filesystem;
using namespace shell_test;

namespace {

// The CLI with `args`, stdout and stderr together.
Run run(const std::string& args) { return cli(args); }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";
const std::string kPrompt = "--tokens 1,17,200,45,3,99";

}  // namespace

TEST_CASE("cli: logits writes an .npy of shape n x vocab and prints the argmax", "[cli]") {
  const fs::path out = fs::temp_directory_path() / "assistgen_cli_logits.npy";
  auto r = run("logits -m " + kModels + "llama-gqa --tokens 1,2,3 --out " + out.string());
  REQUIRE(r.code == 0);
  std::ifstream f(out, std::ios::binary);
  std::string header(128, '\0');
  f.read(header.data(), 128);
  CHECK(header.substr(1, 5) == "NUMPY");
  CHECK(header.find("'shape': (3, 256)") != std::string::npos);
  CHECK(fs::file_size(out) == 128 + 3 * 256 * 4);
  fs::remove(out);
}

TEST_CASE("cli: assisted greedy prints exactly what plain greedy prints", "[cli]") {
  auto plain = run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24");
  REQUIRE(plain.code == 0);
  const std::string expected = first_line(plain.out);
  REQUIRE(expected.size() > 10);
  for (const char* draft : {"llama-draft", "llama-gqa-noisy", "llama-gqa"})
    for (const char* extra : {"--draft-max 1", "--draft-max 4", "--schedule heuristic",
                              "--schedule confidence --draft-max 8"}) {
      INFO(draft << " " << extra);
      auto r = run("generate -m " + kModels + "llama-gqa -a " + kModels + draft + " " + kPrompt +
                   " -n 24 " + extra);
      REQUIRE(r.code == 0);
      CHECK(first_line(r.out) == expected);
      CHECK(r.out.find("acceptance rate") != std::string::npos);
    }
  auto lookup = run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24 --prompt-lookup 3");
  REQUIRE(lookup.code == 0);
  CHECK(first_line(lookup.out) == expected);
}

TEST_CASE("cli: errors are one line naming the fault, with a non-zero exit", "[cli]") {
  auto missing = run("generate -m /nonexistent/model --tokens 1,2");
  CHECK(missing.code == 1);
  CHECK(missing.out.find("/nonexistent/model") != std::string::npos);
  auto bad_tokens = run("generate -m " + kModels + "llama-gqa --tokens 1,x");
  CHECK(bad_tokens.code == 2);
  CHECK(bad_tokens.out.find("'x'") != std::string::npos);
  auto range = run("logits -m " + kModels + "llama-gqa --tokens 1,999");
  CHECK(range.code == 1);
  CHECK(range.out.find("token id 999") != std::string::npos);
  auto unknown = run("generate --frobnicate");
  CHECK(unknown.code == 2);
  CHECK(unknown.out.find("--frobnicate") != std::string::npos);
  auto help = run("generate --help");
  CHECK(help.code == 0);
  CHECK(help.out.find("--draft-max") != std::string::npos);
  auto mismatch =
      run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-tied-bf16 " + kPrompt);
  CHECK(mismatch.code == 1);
  CHECK(mismatch.out.find("EOS token ids differ") != std::string::npos);
}

TEST_CASE("cli: input files must be regular files: a directory or a device is named, not read",
          "[cli]") {
  for (const std::string& args :
       {"bench -m " + kModels + "llama-gqa --quality /dev/zero",
        "bench -m " + kModels + "llama-gqa --quality " + kModels,
        "template -m " + kModels + "llama-gqa --messages /dev/zero"}) {
    const Run r = run(args);
    INFO(args << "\n" << r.out);
    CHECK(r.code == 2);
    CHECK(r.out.find("is not a readable file") != std::string::npos);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  }
}

TEST_CASE("cli: generate -p streams the text Model::generate returns, then the stats", "[cli]") {
  const auto target = text_fixtures::make_model_dir("cli-t", "llama-gqa", "char").string();
  const auto same = text_fixtures::make_model_dir("cli-d", "llama-gqa-noisy", "char").string();
  const auto other = text_fixtures::make_model_dir("cli-u", "llama-gqa-noisy", "merged").string();
  const auto model = assistgen::load_model(target);
  for (const char* prompt : {"And God said", "Hello"}) {
    const std::string expected = model.generate(prompt, {.max_new_tokens = 20}).text;
    INFO(prompt);
    auto plain = run("generate -m " + target + " -p '" + prompt + "' -n 20");
    REQUIRE(plain.code == 0);
    CHECK(plain.out.rfind(expected + "\n\nprompt tokens: ", 0) == 0);
    CHECK(plain.out.find("new tokens: 20") != std::string::npos);
    auto assisted =
        run("generate -m " + target + " -a " + same + " -p '" + prompt + "' -n 20 --draft-max 3");
    REQUIRE(assisted.code == 0);
    CHECK(assisted.out.rfind(expected + "\n\nassistance: draft (same tokenizer", 0) == 0);
    CHECK(assisted.out.find("acceptance rate") != std::string::npos);
    auto universal = run("generate -m " + target + " -a " + other + " -p '" + prompt + "' -n 20");
    REQUIRE(universal.code == 0);
    CHECK(universal.out.rfind(expected + "\n\nassistance: universal", 0) == 0);
    CHECK(universal.out.find("acceptance rate") != std::string::npos);
  }
  // Options not given come from generation_config.json: max_new_tokens 5.
  const auto with_gen =
      text_fixtures::make_model_dir("cli-g", "llama-gqa", "char", R"({"max_new_tokens": 5})");
  auto defaults = run("generate -m " + with_gen.string() + " -p 'And God said' --ignore-eos");
  REQUIRE(defaults.code == 0);
  CHECK(defaults.out.find("new tokens: 5 ") != std::string::npos);
  // --tokens still prints ids first; with a tokenizer.json beside the weights
  // it masks the rows the tokenizer lacks, as text mode does (issue 24).
  auto ids = run("generate -m " + target + " " + kPrompt + " -n 24");
  REQUIRE(ids.code == 0);
  const std::vector<assistgen::Token> prompt_ids{1, 17, 200, 45, 3, 99};
  assistgen::GenerationConfig cfg = model.generation_config({.max_new_tokens = 24}, 6);
  cfg.suppress_tokens.assign(model.masked_tokens().begin(), model.masked_tokens().end());
  std::string expected_ids;
  for (auto t : assistgen::generate_autoregressive(model.backend(), prompt_ids, cfg).tokens)
    expected_ids += (expected_ids.empty() ? "" : ",") + std::to_string(t);
  CHECK(first_line(ids.out) == expected_ids);
}

TEST_CASE("cli: tokenize prints the ids (and with --pieces the tokens)", "[cli]") {
  const auto dir = text_fixtures::make_model_dir("cli-tok", "llama-gqa", "merged").string();
  const auto tok = assistgen::Tokenizer::load(dir);
  const auto ids = tok.encode("And the God said");
  std::string expected;
  for (std::size_t i = 0; i < ids.size(); ++i) expected += (i ? "," : "") + std::to_string(ids[i]);
  auto r = run("tokenize -m " + dir + " -p 'And the God said'");
  REQUIRE(r.code == 0);
  CHECK(r.out == expected + "\n");
  auto p = run("tokenize -m " + dir + " -p 'And the God said' --pieces");
  REQUIRE(p.code == 0);
  CHECK(p.out.rfind(expected + "\n", 0) == 0);
  CHECK(p.out.find("\tĠthe\n") != std::string::npos);
  // The char tokenizer adds BOS; --no-special drops it.
  const auto chr = text_fixtures::make_model_dir("cli-tok2", "llama-gqa", "char").string();
  CHECK(run("tokenize -m " + chr + " -p ab").out == "1,70,71\n");
  CHECK(run("tokenize -m " + chr + " -p ab --no-special").out == "70,71\n");
  CHECK(run("tokenize -m " + chr + " -p '</s>' --no-special --parse-special").out == "2\n");
}

TEST_CASE("cli: text-mode errors are one line with the right exit code", "[cli]") {
  const auto target = text_fixtures::make_model_dir("cli-et", "llama-gqa", "char").string();
  const auto other = text_fixtures::make_model_dir("cli-eu", "llama-draft", "merged").string();
  auto no_tok = run("generate -m " + kModels + "llama-gqa -p hello");
  CHECK(no_tok.code == 1);
  CHECK(no_tok.out.find("tokenizer.json") != std::string::npos);
  CHECK(std::count(no_tok.out.begin(), no_tok.out.end(), '\n') == 1);
  auto both = run("generate -m " + target + " -p hi " + kPrompt);
  CHECK(both.code == 2);
  auto neither = run("generate -m " + target);
  CHECK(neither.code == 2);
  CHECK(neither.out.find("--prompt") != std::string::npos);
  // Sampling with another tokenizer is universal speculative decoding (issue 18).
  auto sampling = run("generate -m " + target + " -a " + other + " -p hi --temp 0.7");
  CHECK(sampling.code == 0);
  CHECK(sampling.out.find("assistance: universal (the tokenizers differ") != std::string::npos);
  auto tok_missing = run("tokenize -m " + target);
  CHECK(tok_missing.code == 2);
  CHECK(tok_missing.out.find("--prompt") != std::string::npos);
  auto help = run("tokenize --help");
  CHECK(help.code == 0);
  CHECK(help.out.find("--pieces") != std::string::npos);
}

TEST_CASE("cli: --backend hpu-ref gives the CPU backend's greedy ids and compiles only at warm-up",
          "[cli][hpu]") {
  auto cpu = run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 40");
  REQUIRE(cpu.code == 0);
  for (const char* draft : {"llama-draft", "llama-gqa-noisy"}) {
    INFO(draft);
    auto hpu = run("generate --backend hpu-ref -m " + kModels + "llama-gqa -a " + kModels + draft +
                   " " + kPrompt + " -n 40 --schedule heuristic");
    if (!ASSISTGEN_CLI_HAS_HPU) {  // the build says which outcome is right
      REQUIRE(hpu.code == 1);
      REQUIRE(hpu.out.find("built without the HPU backend") != std::string::npos);
      ASSISTGEN_SKIP("HPU backend not built (ASSISTGEN_BUILD_HPU=OFF): hpu-ref not compared");
    }
    REQUIRE(hpu.code == 0);
    CHECK(first_line(hpu.out) == first_line(cpu.out));
    CHECK(hpu.out.find("graphs compiled at warm-up, 0 after") != std::string::npos);
  }
  auto bad = run("generate --backend tpu -m " + kModels + "llama-gqa " + kPrompt);
  CHECK(bad.code == 2);
  CHECK(bad.out.find("'tpu'") != std::string::npos);
}

TEST_CASE("cli: --compare on the demo pair reports the speedup and that the text is identical",
          "[cli][demo]") {
  const std::string models = ASSISTGEN_MODELS_DIR;
  auto r = run("generate -m " + models + "/kjv-target -a " + models +
               "/kjv-draft -p \"And God said\" -n 48 --draft-max 4 --compare --repeat 1");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("acceptance rate") != std::string::npos);
  CHECK(r.out.find("speedup: ") != std::string::npos);
  CHECK(r.out.find("identical output: yes") != std::string::npos);
  // Tree drafts: the target-alone side runs without them.
  auto tree = run("generate -m " + models + "/kjv-target -a " + models +
                  "/kjv-draft -p \"And God said\" -n 24 --tree-nodes 8 --tree-width 2 --compare "
                  "--repeat 1");
  REQUIRE(tree.code == 0);
  CHECK(tree.out.find("tokens per target pass") != std::string::npos);
  CHECK(tree.out.find("identical output: yes") != std::string::npos);
  auto no_draft = run("generate -m " + models + "/kjv-target -p \"And\" -n 4 --compare");
  CHECK(no_draft.code == 2);
  CHECK(no_draft.out.find("--compare needs an assistant") != std::string::npos);
}

TEST_CASE("cli: the README's pair kjv-target-50m with kjv-draft-4m gives the target's greedy text",
          "[cli][demo]") {
  // The README's run command on the memory-bound pair, shortened. The float64
  // reference of HF's LlamaForCausalLM (tools/hf_reference.py generate) gives
  // these 32 tokens after "And God said" (ids 295,386,387) from the shipped bf16
  // weights: 320,1297,44,386,456,879,369,259,407,44,267,259,400,268,386,44,288,
  // 1297,44,267,288,997,44,267,288,997,44,267,288,997,44,267.
  const std::string models = ASSISTGEN_MODELS_DIR;
  auto r = run("generate -m " + models + "/kjv-target-50m -a " + models +
               "/kjv-draft-4m -p \"And God said\" -n 32 --draft-max 5 --compare --repeat 1");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("identical output: yes") != std::string::npos);
  const std::string reference =
      " unto Abraham, God hath given me a son, and a man of God, to Abraham, and to Jacob, and "
      "to Jacob, and to Jacob, and";
  CHECK(r.out.find(reference) != std::string::npos);
}

// ---- issue 24: what a new user trips over ----------------------------------

namespace {

std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::string line_after(const std::string& s, const std::string& prefix) {
  const auto p = s.find(prefix);
  if (p == std::string::npos) return {};
  const auto b = p + prefix.size();
  return s.substr(b, s.find('\n', b) - b);
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t.substr(t.rfind('\n') + 1);
}

}  // namespace

TEST_CASE("cli: --compare judges identity by the resolved do_sample, not the command line",
          "[cli][issue24]") {
  // generation_config.json turns sampling on, as many real models ship.
  const auto target = text_fixtures::make_model_dir("cli24-cmp-t", "llama-gqa", "char",
                                                    R"({"do_sample": true})")
                          .string();
  const auto draft = text_fixtures::make_model_dir("cli24-cmp-d", "llama-gqa-noisy", "char").string();
  auto sampled = run("generate -m " + target + " -a " + draft +
                     " -p 'And God said' -n 24 --compare --repeat 1");
  REQUIRE(sampled.code == 0);
  CHECK(sampled.out.find("identical output: not compared (sampling") != std::string::npos);
  CHECK(sampled.out.find("identical output: NO") == std::string::npos);
  auto greedy = run("generate -m " + target + " -a " + draft +
                    " -p 'And God said' -n 24 --compare --repeat 1 --greedy");
  REQUIRE(greedy.code == 0);
  CHECK(greedy.out.find("identical output: yes") != std::string::npos);
}

TEST_CASE("cli: --greedy and --temp 0 force greedy decoding over generation_config.json",
          "[cli][issue24]") {
  const auto target = text_fixtures::make_model_dir("cli24-g-t", "llama-gqa", "char",
                                                    R"({"do_sample": true})")
                          .string();
  const auto other = text_fixtures::make_model_dir("cli24-g-u", "llama-gqa-noisy", "merged").string();
  const auto model = assistgen::load_model(target);
  const std::string expected =
      model.generate("And God said", {.max_new_tokens = 16, .do_sample = false}).text;
  for (const char* force : {"--greedy", "--temp 0"}) {
    INFO(force);
    auto plain = run("generate -m " + target + " -p 'And God said' -n 16 " + force);
    REQUIRE(plain.code == 0);
    CHECK(plain.out.rfind(expected + "\n\n", 0) == 0);
    // A draft with another tokenizer, greedy: the target's own text.
    auto universal = run("generate -m " + target + " -a " + other + " -p 'And God said' -n 16 " + force);
    REQUIRE(universal.code == 0);
    CHECK(universal.out.rfind(expected + "\n\nassistance: universal", 0) == 0);
  }
  // Without it, generation_config.json's sampling runs through universal
  // speculative decoding (before issue 18 it was an error).
  auto sampled = run("generate -m " + target + " -a " + other + " -p 'And God said' -n 4");
  CHECK(sampled.code == 0);
  CHECK(sampled.out.find("assistance: universal") != std::string::npos);
  CHECK(run("generate -m " + target + " -p hi --greedy --do-sample").code == 2);
  CHECK(run("generate -m " + target + " -p hi --temp 0 --top-k 5").code == 2);
}

TEST_CASE("cli: a GPT-2 target stops at its last position with stop: capacity and keeps the output",
          "[cli][issue24]") {
  auto plain = run("generate -m " + kModels + "gpt2-target --tokens 1,2,3 -n 80");
  REQUIRE(plain.code == 0);
  CHECK(plain.out.find("stop: capacity") != std::string::npos);
  CHECK(count_of(first_line(plain.out), ",") == 64 + 1 - 3 - 1);  // 62 ids
  // Prompt + drafts past the limit in the first round: drafts are planned within it.
  std::string prompt = "1";
  for (int i = 2; i <= 60; ++i) prompt += "," + std::to_string(i);
  auto alone = run("generate -m " + kModels + "gpt2-target --tokens " + prompt + " -n 10");
  auto assisted = run("generate -m " + kModels + "gpt2-target -a " + kModels +
                      "gpt2-draft --tokens " + prompt + " -n 10 --draft-max 8");
  REQUIRE(alone.code == 0);
  REQUIRE(assisted.code == 0);
  CHECK(first_line(assisted.out) == first_line(alone.out));
  CHECK(count_of(first_line(assisted.out), ",") == 64 + 1 - 60 - 1);
  CHECK(assisted.out.find("stop: capacity") != std::string::npos);
  // RoPE past max_position_embeddings (128 here) runs, with one warning.
  auto rope = run("generate -m " + kModels + "llama-gqa --tokens 1,2,3 -n 140 --ignore-eos");
  REQUIRE(rope.code == 0);
  CHECK(rope.out.find("stop: max_new_tokens") != std::string::npos);
  CHECK(count_of(rope.out, "max_position_embeddings") == 1);
}

TEST_CASE("cli: unsupported generation_config.json fields are named in a warning", "[cli][issue24]") {
  const auto dir = text_fixtures::make_model_dir(
      "cli24-beams", "llama-gqa", "char", R"({"num_beams": 4, "no_repeat_ngram_size": 3})");
  for (const std::string input : {"-p 'And God said'", "--tokens 1,2,3"}) {
    INFO(input);
    auto r = run("generate -m " + dir.string() + " " + input + " -n 4");
    REQUIRE(r.code == 0);
    CHECK(r.out.find("warning") != std::string::npos);
    CHECK(r.out.find("num_beams = 4") != std::string::npos);
    CHECK(r.out.find("no_repeat_ngram_size = 3") != std::string::npos);
  }
}

TEST_CASE("cli: options that do nothing together are usage errors before anything loads",
          "[cli][issue24]") {
  // The model directory does not exist: a check that came after loading
  // would exit 1 naming it instead.
  const std::string m = "generate -m /nonexistent/model ";
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--tokens 1,2 --ngram 3", "--ngram"},
      {"--tokens 1,2 -a /nonexistent/draft --confidence 0.5", "--confidence"},
      {"--tokens 1,2 --draft-max 3", "--draft-max"},
      {"--tokens 1,2 --schedule heuristic", "--schedule"},
      {"-p hi -a /nonexistent/draft --repeat 3", "--repeat"},
      {"--tokens 1,2 --backend hpu-ref --dtype int8", "--dtype"},
      {"--tokens 1,2 --backend hpu-ref -t 2", "--threads"},
      {"-p hi --compare", "--compare"},
      {"-p hi -a /nonexistent/draft --compare --repeat 0", "--repeat"},
      {"--tokens 1,2 --parse-special", "--parse-special"},
      {"--tokens 1,2 --draft-dtype int4", "--draft-dtype"},
      {"--tokens 1,2 -a /nonexistent/draft --tree-nodes 8 --schedule heuristic", "--schedule"},
      {"--tokens 1,2 -a /nonexistent/draft --tree-shape 2,1 --draft-p-min 0.2", "--draft-p-min"},
      {"--tokens 1,2 --early-exit 1 --draft-dtype int4", "--draft-dtype"},
      {"--tokens 1,2 -a /nonexistent/draft --backend hpu-ref --draft-dtype int8", "--draft-dtype"},
  };
  for (const auto& [args, option] : cases) {
    INFO(args);
    auto r = run(m + args);
    CHECK(r.code == 2);
    CHECK(r.out.find(option) != std::string::npos);
    CHECK(r.out.find("/nonexistent/model") == std::string::npos);
    CHECK(count_of(r.out, "\n") == 1);
  }
}

TEST_CASE("cli: the quickstart example reports a missing model instead of aborting",
          "[cli][issue24]") {
  const std::string exe = ASSISTGEN_QUICKSTART;
  if (exe.empty()) {
    WARN("examples not built: skipped");
    return;
  }
  // Run outside the repository root, where models/ does not exist.
  const std::string cmd =
      "cd " + fs::temp_directory_path().string() + " && " + exe + " 2>&1";
  const Run r = shell(cmd);
  CHECK(r.code == 1);
  const std::string& out = r.out;
  CHECK(out.rfind("error: ", 0) == 0);
  CHECK(out.find("models/kjv-target") != std::string::npos);
}

TEST_CASE("cli: --tokens reads generation_config.json as -p does", "[cli][issue24]") {
  const auto dir = text_fixtures::make_model_dir("cli24-tokcfg", "llama-gqa", "char",
                                                 R"({"max_new_tokens": 5})")
                       .string();
  auto r = run("generate -m " + dir + " --tokens 1,17,200 --ignore-eos");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("new tokens: 5 ") != std::string::npos);
  // The same ids and seed sample the same tokens in both modes.
  const auto tok = assistgen::Tokenizer::load(dir);
  const auto ids = tok.encode("And God said");
  std::string list;
  for (std::size_t i = 0; i < ids.size(); ++i) list += (i ? "," : "") + std::to_string(ids[i]);
  auto by_ids = run("generate -m " + dir + " --tokens " + list + " -n 12 --do-sample --seed 7 --json");
  auto by_text = run("generate -m " + dir + " -p 'And God said' -n 12 --do-sample --seed 7 --json");
  REQUIRE(by_ids.code == 0);
  REQUIRE(by_text.code == 0);
  const auto a = nlohmann::json::parse(last_line(by_ids.out));
  const auto b = nlohmann::json::parse(last_line(by_text.out));
  CHECK(a.at("tokens") == b.at("tokens"));
  CHECK(a.at("new_tokens") == 12);
}

TEST_CASE("cli: --parse-special, detokenize, logits -p, --seed -1 and --json", "[cli][issue24]") {
  const auto dir = text_fixtures::make_model_dir("cli24-misc", "llama-gqa", "char").string();
  // "</s>" is the char tokenizer's special EOS (id 2): one token with --parse-special.
  auto parsed = run("generate -m " + dir + " -p '</s>' -n 2 --parse-special --ignore-eos");
  auto literal = run("generate -m " + dir + " -p '</s>' -n 2 --ignore-eos");
  REQUIRE(parsed.code == 0);
  REQUIRE(literal.code == 0);
  CHECK(line_after(parsed.out, "prompt tokens: ") == "2");  // BOS + </s>
  CHECK(line_after(literal.out, "prompt tokens: ") == "5");
  // detokenize is tokenize's inverse.
  auto ids = run("tokenize -m " + dir + " -p 'And the God said' --no-special");
  REQUIRE(ids.code == 0);
  auto text = run("detokenize -m " + dir + " --tokens " + first_line(ids.out));
  REQUIRE(text.code == 0);
  CHECK(text.out == "And the God said\n");
  CHECK(run("detokenize -m " + dir + " --tokens 1,x").code == 2);
  // logits -p encodes as tokenize does.
  auto with_bos = run("tokenize -m " + dir + " -p 'And God'");
  auto by_text = run("logits -m " + dir + " -p 'And God'");
  auto by_ids = run("logits -m " + dir + " --tokens " + first_line(with_bos.out));
  REQUIRE(by_text.code == 0);
  CHECK(by_text.out == by_ids.out);
  CHECK(run("logits -m " + dir + " -p x --tokens 1").code == 2);
  // --seed -1 draws a seed and prints it; that seed reproduces the run.
  auto random = run("generate -m " + dir + " -p 'And' -n 8 --do-sample --seed -1");
  REQUIRE(random.code == 0);
  const std::string seed = line_after(random.out, "seed: ");
  REQUIRE(seed.find(" (random)") != std::string::npos);
  auto again = run("generate -m " + dir + " -p 'And' -n 8 --do-sample --seed " +
                   seed.substr(0, seed.find(' ')));
  CHECK(first_line(again.out) == first_line(random.out));
  // --json: the stats as one object.
  auto js = run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-gqa-noisy " +
                kPrompt + " -n 16 --json");
  REQUIRE(js.code == 0);
  const auto j = nlohmann::json::parse(last_line(js.out));
  CHECK(j.at("new_tokens") == 16);
  CHECK(j.at("stop") == "max_new_tokens");
  CHECK(j.at("tokens").size() == 16);
  CHECK(j.at("acceptance_rate").get<double>() >= 0.0);
}

TEST_CASE("cli: bench -m measures only that model unless --tinyllama", "[cli][issue24]") {
  auto r = run("bench -m " + kModels + "llama-gqa --dtype f32 --reps 1 --prefill 0 --context 4 "
               "--new-tokens 4 --draft-max 2 -t 1");
  REQUIRE(r.code == 0);
  CHECK(r.out.find("llama-gqa, f32 weights") != std::string::npos);
  CHECK(r.out.find("TinyLlama") == std::string::npos);
  CHECK(run("bench -m " + kModels + "llama-gqa --tinyllama --no-tinyllama").code == 2);
}

TEST_CASE("cli: --draft-min, --draft-p-min and --verbose per-position acceptance", "[cli][issue24]") {
  auto plain = run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24");
  REQUIRE(plain.code == 0);
  for (const char* extra : {"--draft-p-min 0.05", "--draft-min 3", "--draft-min 2 --draft-p-min 0.02 --schedule heuristic"}) {
    INFO(extra);
    auto r = run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-gqa-noisy " +
                 kPrompt + " -n 24 -v " + extra);
    REQUIRE(r.code == 0);
    CHECK(first_line(r.out) == first_line(plain.out));
    CHECK(r.out.find("acceptance by position:") != std::string::npos);
  }
  auto v = run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-gqa-noisy " + kPrompt +
               " -n 16 --verbose");
  CHECK(v.out.find("acceptance by position: 1: 0.750 (3/4), 2: 0.750 (3/4)") != std::string::npos);
  CHECK(run("generate -m " + kModels + "llama-gqa " + kPrompt + " --draft-p-min 0.1").code == 2);
  CHECK(run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-gqa-noisy " + kPrompt +
            " --draft-min 6 --draft-max 4").code == 2);
}

TEST_CASE(
    "cli: --draft-dtype stores the draft alone in another precision; the output stays the "
    "target's",
    "[cli]") {
  // The target as its own draft: in the target's precision every drafted
  // token is accepted, so a rejection shows that the draft really ran in
  // another one.
  const auto run_json = [](const std::string& args) {
    const Run r =
        run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24 -t 1 --json " + args);
    REQUIRE(r.code == 0);
    return nlohmann::json::parse(last_line(r.out));
  };
  for (const std::string target : {"", "--dtype int8 "}) {
    INFO(target);
    const auto plain = run_json(target);
    const auto same = run_json(target + "-a " + kModels + "llama-gqa --draft-max 4");
    CHECK(same["tokens"] == plain["tokens"]);
    CHECK(same["accepted"] == same["drafted"]);
    // (bf16 rounding of an f32 draft happens to change none of its choices here.)
    for (const char* draft : {target.empty() ? "int8" : "f32", "int4"}) {
      INFO(draft);
      const auto r =
          run_json(target + "-a " + kModels + "llama-gqa --draft-max 4 --draft-dtype " + draft);
      CHECK(r["tokens"] == plain["tokens"]);
      CHECK(r["accepted"].get<int>() < r["drafted"].get<int>());
    }
  }
  // Tree drafts take it the same way.
  const auto tree =
      run_json("-a " + kModels + "llama-gqa --tree-nodes 6 --tree-width 2 --draft-dtype int4");
  CHECK(tree["tokens"] == run_json("")["tokens"]);
  CHECK(tree["accepted"].get<int>() < tree["drafted"].get<int>());
}

TEST_CASE("cli: --draft-dtype without -a is a usage error in chat and serve and bench", "[cli]") {
  const std::string models = ASSISTGEN_MODELS_DIR;
  for (const std::string cmd : {"chat", "serve --port 0", "bench --no-tinyllama"}) {
    INFO(cmd);
    const Run r = run(cmd + " -m " + models + "/kjv-target --draft-dtype int4 < /dev/null");
    CHECK(r.code == 2);
    CHECK(r.out.find("--draft-dtype applies only with a draft model (-a)") != std::string::npos);
    CHECK(count_of(r.out, "\n") == 1);
  }
}

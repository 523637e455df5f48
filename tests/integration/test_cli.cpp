// The assistgen CLI end to end: logits as .npy, plain and assisted generate
// giving identical greedy ids, text in / text out (-p) with the same text as
// the library's Model::generate, tokenize, and one-line errors with non-zero
// exit codes.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "assistgen/generate.hpp"
#include "integration/text_fixtures.hpp"
#include "test_skip.hpp"

namespace fs = std::filesystem;

namespace {

struct Run {
  int code;
  std::string out;  // stdout and stderr together
};

Run run(const std::string& args) {
  const std::string cmd = std::string(ASSISTGEN_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

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
    CHECK(assisted.out.rfind(expected + "\n\nassistance: draft\n", 0) == 0);
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
  // --tokens still prints ids first, whatever the directory holds.
  auto ids = run("generate -m " + target + " " + kPrompt + " -n 24");
  REQUIRE(ids.code == 0);
  auto reference = run("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24");
  CHECK(first_line(ids.out) == first_line(reference.out));
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
  auto sampling = run("generate -m " + target + " -a " + other + " -p hi --temp 0.7");
  CHECK(sampling.code == 1);
  CHECK(sampling.out.find("do_sample") != std::string::npos);
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
  auto no_draft = run("generate -m " + models + "/kjv-target -p \"And\" -n 4 --compare");
  CHECK(no_draft.code == 2);
  CHECK(no_draft.out.find("--compare needs an assistant") != std::string::npos);
}

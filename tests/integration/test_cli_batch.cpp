// assistgen batch end to end: JSONL in, one JSON object per line out in the
// input's order, each sequence's output equal to what the library (and
// `assistgen generate`) gives it alone; bad lines reported on stderr with
// their line number while the others run; aggregate stats on stderr; token
// lines for models without a tokenizer; usage errors.

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "assistgen/generate.hpp"
#include "integration/cli_json.hpp"
#include "integration/shell_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using shell_test::ids_of;
using shell_test::json_lines;
using shell_test::Run;

// The CLI with `args`, stdout and stderr together.
Run run(const std::string& args) { return shell_test::cli(args); }

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() /
                     ("assistgen_cli_batch_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

const std::string kDemo = std::string(ASSISTGEN_MODELS_DIR) + "/";
const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";

}  // namespace

TEST_CASE("cli batch: text lines give generate's text, bad lines name their line number", "[cli]") {
  const fs::path in = write_file(
      "in.jsonl",
      "{\"prompt\": \"And God said\", \"max_new_tokens\": 12}\n"
      "\n"
      "{\"prompt\": \"In the beginning\", \"max_new_tokens\": 9, \"seed\": 3, \"temp\": 0.8}\n"
      "{\"prompt\": \"Thou shalt\", \"top_p\": 2}\n"
      "not json\n"
      "{\"prompt\": \"Blessed are\", \"colour\": 1}\n"
      "{\"prompt\": \"And it came to pass\", \"max_new_tokens\": 20, \"stop\": \" the\", "
      "\"draft_max\": 3}\n");
  const fs::path out =
      fs::temp_directory_path() / ("assistgen_cli_batch_out_" + std::to_string(::getpid()));
  const Run r = run("batch -m " + kDemo + "kjv-target -a " + kDemo + "kjv-draft --prompts " +
                    in.string() + " --max-batch 2 -t 1 --out " + out.string());
  CHECK(r.code == 1);  // some lines failed
  // Each bad line on stderr, with its line number.
  CHECK(r.out.find(in.string() + ":4: ") != std::string::npos);
  CHECK(r.out.find("top_p") != std::string::npos);
  CHECK(r.out.find(in.string() + ":5: not valid JSON") != std::string::npos);
  CHECK(r.out.find(in.string() + ":6: unknown key \"colour\"") != std::string::npos);
  // Aggregate stats.
  CHECK(r.out.find("batch: 6 sequences (3 failed)") != std::string::npos);
  CHECK(r.out.find("tokens/s") != std::string::npos);
  CHECK(r.out.find("mean batch") != std::string::npos);
  CHECK(r.out.find("acceptance") != std::string::npos);

  const std::vector<json> lines = read_jsonl(out);
  REQUIRE(lines.size() == 6);
  const assistgen::Model target = assistgen::load_model(kDemo + "kjv-target", {.threads = 1});
  const assistgen::Model draft = assistgen::load_model(kDemo + "kjv-draft", {.threads = 1});
  struct Expect {
    std::size_t line;
    std::string prompt;
    assistgen::GenerateOptions options;
  };
  const std::vector<Expect> good = {
      {1, "And God said", {.max_new_tokens = 12}},
      {3,
       "In the beginning",
       {.max_new_tokens = 9, .do_sample = true, .temperature = 0.8f, .seed = 3}},
      {7,
       "And it came to pass",
       {.max_new_tokens = 20,
        .num_assistant_tokens = 3,
        .stop = std::vector<std::string>{" the"}}}};
  const std::vector<std::size_t> index_of_good = {0, 1, 5};
  for (std::size_t g = 0; g < good.size(); ++g) {
    const json& j = lines[index_of_good[g]];
    INFO(j.dump());
    CHECK(j["index"] == index_of_good[g]);
    CHECK(j["line"] == good[g].line);
    REQUIRE(j.contains("text"));
    const assistgen::TextResult alone = target.generate(good[g].prompt, draft, good[g].options);
    CHECK(j["text"] == alone.text);
    CHECK(j["ids"].get<std::vector<assistgen::Token>>() == alone.tokens);
    CHECK(j["stop"] == std::string(assistgen::stop_reason_name(alone.stop_reason)));
    CHECK(j["stats"]["new_tokens"] == alone.tokens.size());
  }
  CHECK(lines[2]["line"] == 4);
  CHECK(lines[2].contains("error"));
  CHECK(lines[3]["line"] == 5);
  CHECK(lines[4]["line"] == 6);
  fs::remove(in);
  fs::remove(out);
}

TEST_CASE("cli batch: token lines without a tokenizer give generate --tokens' ids", "[cli]") {
  const fs::path in = write_file(
      "tok.jsonl",
      "{\"tokens\": [1, 17, 200, 45, 3, 99], \"max_new_tokens\": 16}\n"
      "{\"tokens\": [5, 6, 7], \"max_new_tokens\": 10, \"draft_max\": 2}\n"
      "{\"tokens\": [1, 2, 3, 4], \"max_new_tokens\": 8, \"do_sample\": true, \"seed\": 9}\n");
  const Run r = run("batch -m " + kModels + "llama-gqa -a " + kModels +
                    "llama-gqa-noisy --prompts " + in.string() + " --max-batch 3 -t 1");
  REQUIRE(r.code == 0);
  const std::vector<json> lines = json_lines(r.out);
  REQUIRE(lines.size() == 3);
  const std::vector<std::string> args = {"--tokens 1,17,200,45,3,99 -n 16",
                                         "--tokens 5,6,7 -n 10 --draft-max 2",
                                         "--tokens 1,2,3,4 -n 8 --do-sample --seed 9"};
  for (std::size_t i = 0; i < 3; ++i) {
    const Run g = run("generate -m " + kModels + "llama-gqa -a " + kModels +
                      "llama-gqa-noisy -t 1 " + args[i]);
    REQUIRE(g.code == 0);
    CHECK(g.out.substr(0, g.out.find('\n')) == ids_of(lines[i]));
    CHECK_FALSE(lines[i].contains("text"));
  }
  CHECK(r.out.find("batch: 3 sequences (0 failed)") != std::string::npos);

  // A text line needs a tokenizer: that line fails, naming it.
  const fs::path bad = write_file("bad.jsonl", "{\"tokens\": [1, 2]}\n{\"prompt\": \"hi\"}\n");
  const Run b = run("batch -m " + kModels + "llama-gqa --prompts " + bad.string() + " -t 1");
  CHECK(b.code == 1);
  CHECK(b.out.find(bad.string() + ":2: \"prompt\" needs a tokenizer.json") != std::string::npos);
  CHECK(b.out.find("\"index\":0") != std::string::npos);
  fs::remove(in);
  fs::remove(bad);
}

TEST_CASE("cli batch: usage errors", "[cli]") {
  CHECK(run("batch -m " + kModels + "llama-gqa").code == 2);  // no --prompts
  CHECK(run("batch --prompts x.jsonl").code == 2);            // no -m
  CHECK(run("batch -m " + kModels + "llama-gqa --prompts x.jsonl --max-batch 0").code == 2);
  const Run missing = run("batch -m " + kModels + "llama-gqa --prompts /nonexistent/p.jsonl");
  CHECK(missing.code == 2);  // a usage error, as for every input file of the CLI
  CHECK(missing.out.find("/nonexistent/p.jsonl") != std::string::npos);
  const Run device = run("batch -m " + kModels + "llama-gqa --prompts /dev/zero");
  CHECK(device.code == 2);
  CHECK(device.out.find("--prompts: '/dev/zero' is not a readable file") != std::string::npos);
  const Run no_draft =
      run("batch -m " + kModels + "llama-gqa --prompts x.jsonl --draft-dtype int4");
  CHECK(no_draft.code == 2);
  CHECK(no_draft.out.find("--draft-dtype applies only with a draft model (-a)") !=
        std::string::npos);
}

TEST_CASE("cli batch: --dtype int4 and --draft-dtype give generate's ids", "[cli]") {
  const fs::path in = write_file("dt.jsonl",
                                 "{\"tokens\": [1, 17, 200, 45, 3, 99], \"max_new_tokens\": 16}\n"
                                 "{\"tokens\": [5, 6, 7], \"max_new_tokens\": 10}\n");
  // The target as its own draft: every draft is accepted in the same precision.
  // Each case: batch's precision options, and the target's for generate alone.
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--draft-dtype int4", ""}, {"--dtype int4 --draft-dtype f32", " --dtype int4"}};
  for (const auto& [dtypes, target] : cases) {
    INFO(dtypes);
    const Run r = run("batch -m " + kModels + "llama-gqa -a " + kModels + "llama-gqa --prompts " +
                      in.string() + " --max-batch 2 -t 1 " + dtypes);
    REQUIRE(r.code == 0);
    const std::vector<json> lines = json_lines(r.out);
    REQUIRE(lines.size() == 2);
    const std::vector<std::string> args = {"--tokens 1,17,200,45,3,99 -n 16",
                                           "--tokens 5,6,7 -n 10"};
    int accepted = 0, drafted = 0;
    for (std::size_t i = 0; i < 2; ++i) {
      const Run g = run("generate -m " + kModels + "llama-gqa -t 1 " + args[i] + target);
      REQUIRE(g.code == 0);
      CHECK(g.out.substr(0, g.out.find('\n')) == ids_of(lines[i]));
      accepted += lines[i]["stats"]["accepted"].get<int>();
      drafted += lines[i]["stats"]["drafted"].get<int>();
    }
    CHECK(accepted < drafted);  // the draft ran in the other precision
  }
  fs::remove(in);
}

// `assistgen batch --early-exit E` and `assistgen serve --early-exit E`:
// self-speculation on the batched engine from the command line. Each
// sequence's ids equal `assistgen generate --early-exit E` (and, greedy, the
// target alone); bad combinations and layers are refused before anything
// runs.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "integration/cli_json.hpp"
#include "integration/shell_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using shell_test::cli;
using shell_test::ids_of;
using shell_test::json_lines;
using shell_test::Run;

namespace {

const std::string kDemo = std::string(ASSISTGEN_MODELS_DIR) + "/";
const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() /
                     ("assistgen_cli_ee_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TEST_CASE("cli batch --early-exit: every line equals generate --early-exit alone", "[cli]") {
  const fs::path in = write_file(
      "text.jsonl",
      "{\"tokens\": [12, 400, 77, 1000], \"max_new_tokens\": 20}\n"
      "{\"tokens\": [5, 6, 7], \"max_new_tokens\": 14, \"draft_max\": 3}\n"
      "{\"tokens\": [1, 2, 3, 4], \"max_new_tokens\": 12, \"do_sample\": true, \"seed\": 9}\n"
      "{\"tokens\": [9, 9], \"max_new_tokens\": 5, \"prompt_lookup\": 2}\n");
  const Run r = cli("batch -m " + kDemo + "kjv-target --early-exit 2 --prompts " + in.string() +
                    " --max-batch 3 -t 1 2>&1");
  INFO(r.out);
  CHECK(r.code == 1);  // the prompt-lookup line fails, naming the conflict
  CHECK(r.out.find(in.string() + ":4: generate: assistant_early_exit and prompt_lookup_num_tokens") !=
        std::string::npos);
  const std::vector<json> lines = json_lines(r.out);
  REQUIRE(lines.size() == 4);
  const std::vector<std::string> args = {"--tokens 12,400,77,1000 -n 20",
                                         "--tokens 5,6,7 -n 14 --draft-max 3",
                                         "--tokens 1,2,3,4 -n 12 --do-sample --seed 9"};
  for (std::size_t i = 0; i < args.size(); ++i) {
    INFO("line " << i + 1);
    const Run g = cli("generate -m " + kDemo + "kjv-target --early-exit 2 -t 1 " + args[i]);
    REQUIRE(g.code == 0);
    CHECK(first_line(g.out) == ids_of(lines[i]));
    CHECK(lines[i]["stats"]["drafted"].get<int>() > 0);
  }
  // Greedy: the target's own ids.
  const Run plain = cli("generate -m " + kDemo + "kjv-target -t 1 --tokens 12,400,77,1000 -n 20");
  CHECK(first_line(plain.out) == ids_of(lines[0]));
  CHECK(lines[3].contains("error"));

  // Without a tokenizer (token mode, generate_batch_ids): the same.
  const fs::path tok = write_file("tok.jsonl", "{\"tokens\": [1, 17, 200, 45], \"max_new_tokens\": 12}\n"
                                                "{\"tokens\": [5, 6, 7], \"max_new_tokens\": 9}\n");
  const Run t = cli("batch -m " + kModels + "llama-gqa --early-exit 1 --prompts " + tok.string() +
                    " -t 1 2>&1");
  INFO(t.out);
  REQUIRE(t.code == 0);
  const std::vector<json> tl = json_lines(t.out);
  REQUIRE(tl.size() == 2);
  const Run g0 = cli("generate -m " + kModels + "llama-gqa -t 1 --tokens 1,17,200,45 -n 12");
  const Run g1 = cli("generate -m " + kModels + "llama-gqa -t 1 --tokens 5,6,7 -n 9");
  CHECK(first_line(g0.out) == ids_of(tl[0]));
  CHECK(first_line(g1.out) == ids_of(tl[1]));
  fs::remove(in);
  fs::remove(tok);
}

TEST_CASE("cli batch and serve --early-exit: bad combinations and layers", "[cli]") {
  const fs::path in = write_file("one.jsonl", "{\"tokens\": [1, 2], \"max_new_tokens\": 2}\n");
  const Run both = cli("batch -m " + kDemo + "kjv-target -a " + kDemo + "kjv-draft --early-exit 1 --prompts " +
                       in.string() + " 2>&1");
  CHECK(both.code == 2);
  CHECK(both.out.find("-a/--assistant and --early-exit are alternatives") != std::string::npos);
  const Run deep = cli("batch -m " + kDemo + "kjv-target --early-exit 6 --prompts " + in.string() + " 2>&1");
  CHECK(deep.code == 1);  // the line fails: the model has 6 layers
  CHECK(deep.out.find("early_exit 6 must be below the target's 6 layers") != std::string::npos);

  const Run s1 = cli("serve -m " + kDemo + "kjv-target --prompt-lookup 3 --early-exit 1 --port 0 2>&1");
  CHECK(s1.code == 2);
  CHECK(s1.out.find("are alternatives") != std::string::npos);
  // Checked at start, before the server listens (so the command returns).
  const Run s2 = cli("serve -m " + kDemo + "kjv-target --early-exit 6 --port 0 2>&1");
  CHECK(s2.code == 1);
  CHECK(s2.out.find("early_exit 6 must be below the target's 6 layers") != std::string::npos);
  CHECK(s2.out.find("listening") == std::string::npos);
  fs::remove(in);
}

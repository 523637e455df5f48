// assistgen generate / batch with tree drafts (--tree-nodes, --tree-width,
// --tree-shape): the output is the target's own greedy output, the tree
// stats are printed (text and --json), and the options that would do
// nothing are usage errors.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "integration/shell_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";
const std::string kDemo = std::string(ASSISTGEN_MODELS_DIR) + "/";
const std::string kPrompt = "--tokens 1,17,200,45,3,99";

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
json last_json(const std::string& s) {
  const auto end = s.find_last_not_of('\n');
  const auto start = s.rfind('\n', end);
  return json::parse(s.substr(start == std::string::npos ? 0 : start + 1));
}

}  // namespace

TEST_CASE("cli: tree drafts print exactly what plain greedy prints, with the tree stats",
          "[cli][tree]") {
  const auto plain = shell_test::cli("generate -m " + kModels + "llama-gqa " + kPrompt + " -n 24");
  REQUIRE(plain.code == 0);
  for (const char* extra : {"--tree-nodes 8", "--tree-nodes 16 --tree-width 2 --draft-max 6",
                            "--tree-shape 3,2,1", "--tree-shape 4,4 --tree-nodes 6"}) {
    INFO(extra);
    const auto r = shell_test::cli("generate -m " + kModels + "llama-gqa -a " + kModels +
                                   "llama-gqa-noisy " + kPrompt + " -n 24 " + extra);
    REQUIRE(r.code == 0);
    CHECK(first_line(r.out) == first_line(plain.out));
    CHECK(r.out.find("tree: nodes verified per pass") != std::string::npos);
    CHECK(r.out.find("mean accepted depth") != std::string::npos);
  }
  // Text mode on the demo pair, --json.
  const auto text_plain = shell_test::cli(
      "generate -m " + kDemo + "kjv-target -p 'And God said' -n 32 -t 1 --greedy --json");
  const auto text_tree =
      shell_test::cli("generate -m " + kDemo + "kjv-target -a " + kDemo +
                      "kjv-draft -p 'And God said' -n 32 -t 1 --greedy --json --tree-nodes 12");
  REQUIRE(text_plain.code == 0);
  REQUIRE(text_tree.code == 0);
  const json a = last_json(text_plain.out), b = last_json(text_tree.out);
  CHECK(a["tokens"] == b["tokens"]);
  CHECK(b["tokens_per_target_pass"].get<double>() > 1.0);
  CHECK(b["tree_nodes_per_pass"].get<double>() > 1.0);
  CHECK(b.contains("tree_mean_accepted_depth"));
}

TEST_CASE("cli: tree options without a draft model are usage errors", "[cli][tree]") {
  for (const char* bad : {"--tree-nodes 8", "--tree-shape 2,2", "--tree-width 2"}) {
    INFO(bad);
    const auto r = shell_test::cli("generate -m " + kModels + "llama-gqa " + kPrompt + " " + bad);
    CHECK(r.code == 2);
    CHECK(r.out.find("--tree-") != std::string::npos);
  }
  const auto width_alone = shell_test::cli("generate -m " + kModels + "llama-gqa -a " + kModels +
                                           "llama-draft " + kPrompt + " --tree-width 2");
  CHECK(width_alone.code == 2);
  CHECK(width_alone.out.find("--tree-nodes") != std::string::npos);
  const auto bad_shape = shell_test::cli("generate -m " + kModels + "llama-gqa -a " + kModels +
                                         "llama-draft " + kPrompt + " --tree-shape 2,x");
  CHECK(bad_shape.code == 2);
  CHECK(bad_shape.out.find("--tree-shape") != std::string::npos);
}

TEST_CASE("cli: batch with tree drafts gives every sequence the target's greedy output",
          "[cli][tree][batch]") {
  const fs::path in =
      fs::temp_directory_path() / ("assistgen_cli_tree_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(in) << "{\"tokens\": [1, 17, 200, 45], \"max_new_tokens\": 20}\n"
                       "{\"tokens\": [5, 6], \"max_new_tokens\": 16, \"draft_max\": 6}\n"
                       "{\"tokens\": [99, 3, 3, 7, 250], \"max_new_tokens\": 12}\n";
  const auto plain = shell_test::cli("batch -m " + kModels + "llama-gqa --prompts " + in.string() +
                                     " 2>/dev/null");
  const auto tree = shell_test::cli("batch -m " + kModels + "llama-gqa -a " + kModels +
                                    "llama-gqa-noisy --prompts " + in.string() +
                                    " --tree-nodes 12 --tree-width 3");
  fs::remove(in);
  REQUIRE(plain.code == 0);
  REQUIRE(tree.code == 0);
  std::istringstream pa(plain.out), tr(tree.out);
  std::string la, lb;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(std::getline(pa, la));
    REQUIRE(std::getline(tr, lb));
    CHECK(json::parse(la)["ids"] == json::parse(lb)["ids"]);
  }
  CHECK(tree.out.find("tree: nodes verified per pass") != std::string::npos);
}

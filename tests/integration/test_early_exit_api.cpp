// Self-speculation through the text API (GenerateOptions::assistant_early_exit,
// generation_config.json's assistant_early_exit, ChatSession) and the CLI
// (--early-exit E), on the demo target: the output is the target's own, the
// path and its reason are reported, and bad combinations are clear errors.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "assistgen/assistgen.hpp"
#include "integration/shell_run.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {
const fs::path kDemo = ASSISTGEN_MODELS_DIR;
const std::string kText = "And God said";
}  // namespace

TEST_CASE("early exit: the text API gives the target's own greedy text for every exit layer",
          "[early_exit_api]") {
  const Model target = load_model(kDemo / "kjv-target");
  const TextResult plain = target.generate(kText, {.max_new_tokens = 40});
  for (std::size_t e = 1; e < 6; ++e) {
    INFO("E " << e);
    const TextResult r = target.generate(kText, {.max_new_tokens = 40, .assistant_early_exit = e});
    REQUIRE(r.assistance == Assistance::early_exit);
    REQUIRE(r.assistance_reason == "the target's first " + std::to_string(e) +
                                       " of 6 layers draft; verification reuses their K/V "
                                       "and hidden states");
    REQUIRE(r.tokens == plain.tokens);
    REQUIRE(r.text == plain.text);
    REQUIRE(r.stats.drafted > 0);
    REQUIRE(r.stats.target_calls < plain.stats.target_calls);
  }
  // 0 is off; generation_config.json's value is the default.
  REQUIRE(target.generate(kText, {.max_new_tokens = 5, .assistant_early_exit = 0}).assistance ==
          Assistance::none);
  const GenerateOptions file =
      GenerateOptions::parse_generation_config(R"({"assistant_early_exit": 3})");
  REQUIRE(file.assistant_early_exit == 3u);
  REQUIRE_THROWS_AS(GenerateOptions::parse_generation_config(R"({"assistant_early_exit": -1})"),
                    ConfigError);
  const Model with_default(target.backend(), target.tokenizer(),
                           target.generation_defaults().merged(file));
  const TextResult d = with_default.generate(kText, {.max_new_tokens = 40});
  REQUIRE(d.assistance == Assistance::early_exit);
  REQUIRE(d.tokens == plain.tokens);
}

TEST_CASE("early exit: sampling, chat sessions and errors through the text API",
          "[early_exit_api]") {
  const Model target = load_model(kDemo / "kjv-target");
  const Model draft = load_model(kDemo / "kjv-draft");
  // Sampling runs and is reproducible by seed (its law: test_self_speculation).
  const GenerateOptions s{
      .max_new_tokens = 30, .do_sample = true, .seed = 7, .assistant_early_exit = 2};
  const TextResult a = target.generate(kText, s), b = target.generate(kText, s);
  REQUIRE(a.assistance == Assistance::early_exit);
  REQUIRE(a.tokens == b.tokens);
  REQUIRE(a.tokens.size() == 30);
  REQUIRE_THROWS_WITH(target.generate(kText, draft, {.assistant_early_exit = 2}),
                      Catch::Contains("alternatives"));
  REQUIRE_THROWS_AS(
      target.generate(kText, {.assistant_early_exit = 2, .prompt_lookup_num_tokens = 3}),
      InvalidArgument);
  REQUIRE_THROWS_WITH(target.generate(kText, {.assistant_early_exit = 6}),
                      Catch::Contains("early_exit 6 must be below the target's 6 layers"));
}

TEST_CASE("early exit: the CLI's --early-exit prints the target's own output and the path",
          "[early_exit_api][cli]") {
  const std::string target = (kDemo / "kjv-target").string();
  const auto plain = shell_test::cli("generate -m " + target + " -p '" + kText + "' -n 30");
  REQUIRE(plain.code == 0);
  const auto self =
      shell_test::cli("generate -m " + target + " -p '" + kText + "' -n 30 --early-exit 4");
  INFO(self.out);
  REQUIRE(self.code == 0);
  const std::string text = plain.out.substr(0, plain.out.find("\n\n"));
  REQUIRE(self.out.substr(0, self.out.find("\n\n")) == text);
  REQUIRE(self.out.find("assistance: early_exit (the target's first 4 of 6 layers draft") !=
          std::string::npos);
  REQUIRE(self.out.find("acceptance rate") != std::string::npos);
  const auto ids_plain = shell_test::cli("generate -m " + target + " --tokens 12,400,77 -n 20");
  const auto ids =
      shell_test::cli("generate -m " + target + " --tokens 12,400,77 -n 20 --early-exit 2 --json");
  INFO(ids.out);
  REQUIRE(ids.code == 0);
  REQUIRE(ids.out.substr(0, ids.out.find('\n')) ==
          ids_plain.out.substr(0, ids_plain.out.find('\n')));
  REQUIRE(ids.out.find("\"assistance\":\"early_exit\"") != std::string::npos);
  // Errors: one line, non-zero exit.
  const auto both =
      shell_test::cli("generate -m " + target + " -a " + target + " -p x --early-exit 2");
  REQUIRE(both.code != 0);
  REQUIRE(both.out.find("--early-exit") != std::string::npos);
  const auto too_deep = shell_test::cli("generate -m " + target + " -p x --early-exit 6");
  REQUIRE(too_deep.code != 0);
  REQUIRE(too_deep.out.find("early_exit 6 must be below the target's 6 layers") !=
          std::string::npos);
}

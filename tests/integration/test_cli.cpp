// The assistgen CLI end to end: logits as .npy, plain and assisted generate
// giving identical greedy ids, and one-line errors with non-zero exit codes.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

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

TEST_CASE("cli: logits writes an .npy of shape [n, vocab] and prints the argmax", "[cli]") {
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
  auto mismatch = run("generate -m " + kModels + "llama-gqa -a " + kModels + "llama-tied-bf16 " +
                      kPrompt);
  CHECK(mismatch.code == 1);
  CHECK(mismatch.out.find("EOS token ids differ") != std::string::npos);
}

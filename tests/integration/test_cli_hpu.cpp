// The CLI's --backend hpu-ref beyond token mode (issue 26): generate -p on the
// demo pair gives the CPU backend's text in f32 and bf16, fp8 runs and
// compiles nothing after warm-up, `logits --backend hpu-ref` writes logits
// close to the CPU path's, and the options the HPU path cannot honour are
// usage errors naming them.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "integration/shell_run.hpp"
#include "test_skip.hpp"

namespace fs = std::filesystem;
using namespace shell_test;

namespace {

const std::string kDemo = ASSISTGEN_MODELS_DIR;
const std::string kModels = std::string(ASSISTGEN_TEST_DATA_DIR) + "/models/";

// The generated text: what comes before the blank line that precedes the stats.
std::string text_of(const std::string& out) { return out.substr(0, out.find("\n\n")); }

// The float32 payload of an .npy written by `assistgen logits --out`.
std::vector<float> read_npy(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::string header(128, '\0');
  f.read(header.data(), 128);
  std::vector<float> v((fs::file_size(p) - 128) / 4);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

void require_hpu(const Run& r) {
  if (!ASSISTGEN_CLI_HAS_HPU) {
    REQUIRE(r.code == 1);
    REQUIRE(r.out.find("built without the HPU backend") != std::string::npos);
    ASSISTGEN_SKIP("HPU backend not built (ASSISTGEN_BUILD_HPU=OFF)");
  }
}

}  // namespace

TEST_CASE("cli: generate -p --backend hpu-ref gives the CPU backend's text in f32 and bf16",
          "[cli][hpu]") {
  const std::string base =
      "generate -m " + kDemo + "/kjv-target -a " + kDemo + "/kjv-draft -p 'And God said' -n 24 ";
  for (const char* dtype : {"f32", "bf16"}) {
    INFO(dtype);
    const Run cpu = cli(base + "--dtype " + dtype);
    REQUIRE(cpu.code == 0);
    const Run hpu = cli(base + "--backend hpu-ref --dtype " + dtype);
    require_hpu(hpu);
    REQUIRE(hpu.code == 0);
    CHECK(text_of(hpu.out) == text_of(cpu.out));
    CHECK(hpu.out.find("kjv-target: 7 graphs compiled at warm-up, 0 after") != std::string::npos);
    CHECK(hpu.out.find("kjv-draft: 7 graphs compiled at warm-up, 0 after") != std::string::npos);
  }
  const Run fp8 = cli(base + "--backend hpu-ref --dtype fp8");
  require_hpu(fp8);
  REQUIRE(fp8.code == 0);
  CHECK(fp8.out.find("graphs compiled at warm-up, 0 after") != std::string::npos);
}

TEST_CASE("cli: logits --backend hpu-ref writes the HPU path's logits, near the CPU path's",
          "[cli][hpu]") {
  const fs::path dir =
      fs::temp_directory_path() / ("assistgen_cli_hpu_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const std::string model : {"llama-gqa", "gpt2-target"})
    for (const char* dtype : {"f32", "bf16"}) {
      INFO(model << " " << dtype);
      const std::string args =
          "logits -m " + kModels + model + " --tokens 1,17,200,45,3 --dtype " + dtype + " --out ";
      const Run cpu = cli(args + (dir / "cpu.npy").string());
      REQUIRE(cpu.code == 0);
      const Run hpu = cli(args + (dir / "hpu.npy").string() + " --backend hpu-ref");
      require_hpu(hpu);
      REQUIRE(hpu.code == 0);
      CHECK(hpu.out == cpu.out);  // the same argmax
      const auto a = read_npy(dir / "cpu.npy"), b = read_npy(dir / "hpu.npy");
      REQUIRE(a.size() == 5 * 256);
      REQUIRE(b.size() == a.size());
      float scale = 0, diff = 0;
      for (std::size_t i = 0; i < a.size(); ++i) {
        scale = std::max(scale, std::abs(a[i]));
        diff = std::max(diff, std::abs(a[i] - b[i]));
      }
      CHECK(diff <= 1e-4f * scale);  // the bound hpu_test_transformer / _precision state
    }
  fs::remove_all(dir);
}

TEST_CASE("cli: what --backend hpu-ref cannot honour is a usage error naming the option",
          "[cli][hpu]") {
  const std::string m = "generate -m /nonexistent/model --backend hpu-ref ";
  for (const auto& [args, option] :
       std::vector<std::pair<std::string, std::string>>{{"-p hi --dtype int8", "--dtype"},
                                                        {"-p hi --dtype int4", "--dtype"},
                                                        {"-p hi -t 2", "--threads"},
                                                        {"--tokens 1,2 --dtype i8", "--dtype"}}) {
    INFO(args);
    const Run r = cli(m + args);
    CHECK(r.code == 2);
    CHECK(r.out.find(option) != std::string::npos);
  }
  const Run logits = cli("logits -m " + kModels + "llama-gqa --tokens 1,2 --backend hpu-ref -t 2");
  CHECK(logits.code == 2);
  CHECK(logits.out.find("--threads") != std::string::npos);
  // fp8 is the HPU path's only.
  const Run cpu_fp8 = cli("logits -m " + kModels + "llama-gqa --tokens 1,2 --dtype fp8");
  CHECK(cpu_fp8.code == 2);
  CHECK(cpu_fp8.out.find("--backend hpu-ref") != std::string::npos);
}

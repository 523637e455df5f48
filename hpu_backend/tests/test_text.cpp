// The text API on the HPU backend: load_model with hpu::text_backend, then
// Model::generate (plain, assisted, prompt lookup) and generate_batch, in f32
// and bf16, give the CPU backend's text for each family; the CPU-only load
// options are refused with the backend hook.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "../../tests/integration/text_fixtures.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/hpu/text.hpp"

using namespace assistgen;
using text_fixtures::make_model_dir;

namespace {

hpu::LoadOptions options(DType dtype, std::size_t positions) {
  hpu::LoadOptions o = hpu::options_for(positions);
  o.dtype = dtype;
  return o;
}

}  // namespace

TEST_CASE(
    "text api on hpu-ref: generate gives the CPU backend's text in f32 and bf16 for each "
    "family",
    "[hpu][text]") {
  // target, draft: the Llama family and GPT-2 (learned positions, LayerNorm).
  const std::vector<std::pair<std::string, std::string>> pairs = {{"llama-gqa", "llama-draft"},
                                                                  {"gpt2-target", "gpt2-draft"}};
  for (const auto& [target_name, draft_name] : pairs)
    for (const DType dt : {DType::f32, DType::bf16}) {
      SECTION(target_name + " " + std::string(dtype_name(dt))) {
        const auto tdir = make_model_dir("hpu-t-" + target_name, target_name, "char");
        const auto ddir = make_model_dir("hpu-d-" + draft_name, draft_name, "char");
        const Model cpu = load_model(tdir, {.dtype = dt});
        const Model target = load_model(tdir, {.backend = hpu::text_backend(options(dt, 64))});
        const Model draft = load_model(ddir, {.backend = hpu::text_backend(options(dt, 64))});
        CHECK(target.masked_tokens().size() == cpu.masked_tokens().size());
        for (const std::string prompt : {"And God said", "In the beginning"}) {
          INFO(prompt);
          const GenerateOptions o{.max_new_tokens = 24};
          const TextResult want = cpu.generate(prompt, o);
          const TextResult plain = target.generate(prompt, o);
          CHECK(plain.tokens == want.tokens);
          CHECK(plain.text == want.text);
          GenerateOptions assisted = o;
          assisted.num_assistant_tokens = 3;
          const TextResult a = target.generate(prompt, draft, assisted);
          CHECK(a.assistance == Assistance::draft);
          CHECK(a.text == want.text);
          GenerateOptions lookup = o;
          lookup.prompt_lookup_num_tokens = 3;
          CHECK(target.generate(prompt, lookup).text == want.text);
        }
        const auto batch = target.generate_batch({"And God said", "Let there be"},
                                                 GenerateOptions{.max_new_tokens = 12});
        REQUIRE(batch.size() == 2);
        CHECK(batch[0].text == cpu.generate("And God said", {.max_new_tokens = 12}).text);
        CHECK(batch[1].text == cpu.generate("Let there be", {.max_new_tokens = 12}).text);
      }
    }
}

TEST_CASE("text api on hpu-ref: the CPU backend's load options are refused with a backend",
          "[hpu][text]") {
  const auto dir = make_model_dir("hpu-opts", "llama-gqa", "char");
  CHECK_THROWS_WITH(load_model(dir, {.dtype = DType::bf16, .backend = hpu::text_backend()}),
                    Catch::Contains("LoadModelOptions::dtype"));
  CHECK_THROWS_WITH(load_model(dir, {.threads = 2, .backend = hpu::text_backend()}),
                    Catch::Contains("LoadModelOptions::threads"));
  // The HPU backend's own options say what it cannot do.
  CHECK_THROWS_WITH(load_model(dir, {.backend = hpu::text_backend(options(DType::i8, 64))}),
                    Catch::Contains("LoadOptions::dtype 'i8'"));
  // A prompt past the buckets the model was loaded for is a CapacityError.
  const Model small = load_model(dir, {.backend = hpu::text_backend(options(DType::f32, 64))});
  CHECK_THROWS_AS(small.generate(std::string(100, 'a'), {.max_new_tokens = 40}), Error);
}

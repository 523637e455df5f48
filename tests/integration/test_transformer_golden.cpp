// cpu::Transformer against golden logits made by tools/make_test_models.py
// from a float64 implementation of the HF model classes (tests/data/README.md),
// plus the cache invariants every backend must keep.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/io/safetensors.hpp"
#include "integration/golden_data.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

using golden::argmax;
using golden::kModels;
using golden::read_ids;

// The acceptance bar for a checkpoint: max |ours - ref| <= 1e-3 * max |ref|,
// and the same argmax in every row.
void check_close(const Logits& ours, const std::vector<float>& ref, const std::string& what) {
  INFO(what);
  REQUIRE(ref.size() == ours.rows() * ours.cols());
  float max_ref = 0, max_diff = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_diff = std::max(max_diff, std::abs(ours.data()[i] - ref[i]));
  }
  CHECK(max_diff <= 1e-3f * max_ref);
  for (std::size_t r = 0; r < ours.rows(); ++r)
    CHECK(argmax(ours.row(r)) ==
          argmax(std::span<const float>(ref.data() + r * ours.cols(), ours.cols())));
}

std::vector<fs::path> golden_models() {
  std::vector<fs::path> dirs;
  if (fs::exists(kModels))
    for (const auto& e : fs::directory_iterator(kModels))
      if (fs::exists(e.path() / "golden.safetensors")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

}  // namespace

TEST_CASE("golden checkpoints are present", "[golden]") {
  // Guards against the data directory, or any one checkpoint of it, silently
  // going missing: the tests below loop over what they find, so every
  // checkpoint tools/make_test_models.py writes is named here.
  std::vector<std::string> names;
  for (const auto& dir : golden_models()) names.push_back(dir.filename().string());
  REQUIRE(names == std::vector<std::string>{"gpt2-draft", "gpt2-target", "llama-256", "llama-draft",
                                            "llama-gqa", "llama-gqa-noisy", "llama-tied-bf16",
                                            "mistral-f16", "mistral-window", "qwen2-bias",
                                            "qwen2-real"});
}

TEST_CASE("logits match the float64 HF reference", "[golden]") {
  for (const auto& dir : golden_models()) {
    SECTION(dir.filename().string()) {
      auto model = cpu::Transformer::load(dir, {.dtype = DType::f32});  // the f32 path
      io::SafetensorsFile golden(dir / "golden.safetensors");
      const auto tokens = read_ids(golden.tensor("tokens"));
      const auto ref = golden.tensor("logits").to_float();
      auto cache = model.make_cache(64);
      check_close(model.forward(tokens, cache), ref, dir.string() + " (prefill)");

      // The same tokens one at a time give the same rows.
      auto c2 = model.make_cache(64);
      Logits stepwise(tokens.size(), model.vocab_size());
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        auto row = model.forward(std::span(tokens).subspan(i, 1), c2);
        std::copy_n(row.data(), model.vocab_size(), stepwise.row(i).data());
      }
      check_close(stepwise, ref, dir.string() + " (one token at a time)");
    }
  }
}

TEST_CASE("greedy continuation matches the reference", "[golden]") {
  for (const auto& dir : golden_models()) {
    SECTION(dir.filename().string()) {
      auto model = cpu::Transformer::load(dir, {.dtype = DType::f32});  // the f32 path
      io::SafetensorsFile golden(dir / "golden.safetensors");
      const auto prompt = read_ids(golden.tensor("greedy_prompt"));
      const auto expected = read_ids(golden.tensor("greedy_ids"));
      auto cache = model.make_cache(prompt.size() + expected.size());
      std::vector<Token> got;
      auto logits = model.forward(prompt, cache);
      while (got.size() < expected.size()) {
        const Token t = static_cast<Token>(argmax(logits.row(logits.rows() - 1)));
        got.push_back(t);
        if (got.size() == expected.size()) break;
        logits = model.forward(std::span(&got.back(), 1), cache);
      }
      CHECK(got == expected);
    }
  }
}

TEST_CASE("truncate then re-append equals a fresh run", "[golden][rollback]") {
  for (const auto& dir : golden_models()) {
    SECTION(dir.filename().string()) {
      auto model = cpu::Transformer::load(dir, {.dtype = DType::f32});  // the f32 path
      io::SafetensorsFile golden(dir / "golden.safetensors");
      const auto tokens = read_ids(golden.tensor("tokens"));
      REQUIRE(tokens.size() >= 8);
      const std::span<const Token> all(tokens);
      for (std::size_t n : {std::size_t{0}, std::size_t{3}, tokens.size() - 1}) {
        // Fill with the whole sequence plus some junk, roll back to n, re-append.
        auto cache = model.make_cache(64);
        model.forward(all, cache);
        std::vector<Token> junk{5, 9, 11};
        model.forward(junk, cache);
        cache.truncate(n);
        REQUIRE(cache.size() == n);
        auto again = model.forward(all.subspan(n), cache);

        auto fresh_cache = model.make_cache(64);
        auto fresh = model.forward(all, fresh_cache);
        // Bit for bit (DESIGN.md): the kernels are batch-invariant.
        for (std::size_t r = 0; r < again.rows(); ++r) {
          INFO("truncated to " << n << ", row " << r);
          REQUIRE(std::memcmp(again.row(r).data(), fresh.row(n + r).data(),
                              model.vocab_size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("bad inputs to forward are clear errors that leave the cache unchanged", "[golden]") {
  auto model = cpu::Transformer::load(kModels / "llama-gqa");
  auto cache = model.make_cache(8);
  std::vector<Token> ok{1, 2};
  model.forward(ok, cache);
  std::vector<Token> bad{3, static_cast<Token>(model.vocab_size())};
  REQUIRE_THROWS_WITH(model.forward(bad, cache),
                      Catch::Contains("token id 256") && Catch::Contains("out of range"));
  std::vector<Token> negative{-1};
  REQUIRE_THROWS_AS(model.forward(negative, cache), InvalidArgument);
  REQUIRE_THROWS_AS(model.forward(std::span<const Token>(), cache), InvalidArgument);
  REQUIRE(cache.size() == 2);
  auto other = cpu::Transformer::load(kModels / "llama-tied-bf16");
  REQUIRE_THROWS_WITH(other.forward(ok, cache), Catch::Contains("another shape"));
}

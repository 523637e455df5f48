// GGUF model files written by tools/make_gguf.py (our own numpy writer, doing
// what llama.cpp's converter does: GGUF names, the Q/K rotary permutation for
// arch llama, Q8_0 as ggml quantizes it) give the logits of the Hugging Face
// directory they came from: bit for bit for F32, F16 and BF16 files (the
// same values, loaded through the same kernels), and within Q8_0's bound for
// the Q8_0 file.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/io/gguf.hpp"

namespace fs = std::filesystem;
using assistgen::DType;
using assistgen::cpu::Transformer;

namespace {

const fs::path kData(ASSISTGEN_TEST_DATA_DIR);

std::vector<float> logits_of(const Transformer& t, const std::vector<assistgen::Token>& ids) {
  auto cache = t.make_cache(ids.size());
  const auto out = t.forward(ids, cache);
  return std::vector<float>(out.data(), out.data() + ids.size() * t.vocab_size());
}

std::vector<assistgen::Token> prompt(std::size_t vocab) {
  std::vector<assistgen::Token> ids;
  for (int i = 0; i < 24; ++i) ids.push_back(static_cast<assistgen::Token>((i * 37 + 5) % vocab));
  return ids;
}

}  // namespace

TEST_CASE("gguf models: F32, F16 and BF16 files give the HF directory's logits bit for bit") {
  struct Case {
    const char* dir;
    const char* gguf;
  };
  const Case cases[] = {{"llama-draft", "llama-draft-f32.gguf"},  // llama, GQA, permuted Q/K
                        {"qwen2-real", "qwen2-real-bf16.gguf"},   // qwen2 (biases, tied, not permuted), BF16
                        {"mistral-f16", "mistral-f16-f16.gguf"}};  // F16 weights, linear RoPE scaling
  for (const Case& k : cases) {
    for (const auto dtype : {std::optional<DType>{}, std::optional<DType>{DType::f32}}) {
      INFO(k.gguf << (dtype ? " dtype f32" : " dtype unset"));
      const Transformer hf = Transformer::load(kData / "models" / k.dir, {.dtype = dtype});
      const Transformer gg = Transformer::load(kData / "gguf" / k.gguf, {.dtype = dtype});
      // A Mistral without a window is a Llama, as llama.cpp's converter writes it.
      if (hf.config().sliding_window != 0) CHECK(gg.config().architecture == hf.config().architecture);
      CHECK(gg.config().tie_word_embeddings == hf.config().tie_word_embeddings);
      // Unset dtype: bf16 for the BF16 file and the bf16 HF directory it came from, f32 otherwise.
      CHECK(gg.dtype() == hf.dtype());
      const auto ids = prompt(hf.vocab_size());
      const auto a = logits_of(hf, ids), b = logits_of(gg, ids);
      REQUIRE(a.size() == b.size());
      CHECK(std::equal(a.begin(), a.end(), b.begin()));
    }
  }
}

TEST_CASE("gguf models: a BF16 file computes in bf16 like the HF directory at dtype bf16") {
  // The BF16 file holds llama-draft's f32 weights rounded to bf16 (nearest
  // even, as the bf16 load of the HF directory rounds them): the matmul
  // weights are the same bits; only the token embedding, which the loader
  // keeps f32, differs by bf16 rounding (relative 2^-9) in the GGUF file.
  const Transformer hf = Transformer::load(kData / "models/llama-draft", {.dtype = DType::bf16});
  const Transformer gg = Transformer::load(kData / "gguf/llama-draft-bf16.gguf");
  CHECK(gg.dtype() == DType::bf16);  // unset dtype: every matmul weight is BF16
  const auto ids = prompt(hf.vocab_size());
  const auto a = logits_of(hf, ids), b = logits_of(gg, ids);
  float range = 0, worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    range = std::max(range, std::abs(a[i]));
    worst = std::max(worst, std::abs(a[i] - b[i]));
  }
  WARN("BF16 file vs HF at dtype bf16: max |logit error| " << worst << " of max |logit| " << range);
  CHECK(worst <= 0.02f * range);
}

TEST_CASE("gguf models: a Q8_0 file stays within Q8_0's error of the HF logits") {
  // Q8_0 rounds each weight to a step of amax/127 of its block of 32: a
  // relative weight error of at most 1/254 of the block maximum. At an unset
  // dtype the file's codes and scales are kept as stored (the grouped
  // kernels, int8 activations); at f32 they are decoded exactly; at int8
  // they are requantized per output row (one more rounding). The measured
  // figures are printed.
  const Transformer hf = Transformer::load(kData / "models/llama-draft", {.dtype = DType::f32});
  const fs::path path = kData / "gguf/llama-draft-q8_0.gguf";
  const auto ids = prompt(hf.vocab_size());
  const auto a = logits_of(hf, ids);
  float range = 0;
  for (const float v : a) range = std::max(range, std::abs(v));
  auto worst_of = [&](const Transformer& t) {
    const auto b = logits_of(t, ids);
    float worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst;
  };
  const Transformer stored = Transformer::load(path);
  CHECK(stored.dtype() == DType::i4);  // the grouped kernels (8-bit codes here)
  const Transformer f32 = Transformer::load(path, {.dtype = DType::f32});
  CHECK(f32.dtype() == DType::f32);
  const Transformer i8 = Transformer::load(path, {.dtype = DType::i8});
  CHECK(i8.dtype() == DType::i8);
  const float w_stored = worst_of(stored), w_f32 = worst_of(f32), w_i8 = worst_of(i8);
  WARN("Q8_0 max |logit error| of max |logit| " << range << ": as stored " << w_stored
                                                 << ", f32 " << w_f32 << ", int8 " << w_i8);
  CHECK(w_f32 > 0.0f);  // it is quantized
  CHECK(w_f32 <= 0.02f * range);
  CHECK(w_stored <= 0.05f * range);  // plus int8 activations
  CHECK(w_i8 <= 0.05f * range);
  // 8-bit codes and a binary16 scale and min per 32 weights: well under a
  // third of f32's bytes.
  CHECK(stored.bytes_per_token() < f32.bytes_per_token() / 3);
}

TEST_CASE("gguf models: unsupported types and architectures name the tensor or key") {
  const fs::path dir = fs::temp_directory_path() / "assistgen_test_gguf_models";
  fs::create_directories(dir);
  // Q4_0 token_embd: the reader accepts it, the loader names tensor and type.
  std::string b = "GGUF";
  auto put32 = [&](std::uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  auto put64 = [&](std::uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& s) { put64(s.size()); b += s; };
  auto file = [&](const std::string& arch, std::uint32_t type) {
    b = "GGUF";
    put32(3); put64(1); put64(1);
    str("general.architecture"); put32(8); str(arch);
    str("token_embd.weight"); put32(2); put64(32); put64(2); put32(type); put64(0);
    b.append((32 - b.size() % 32) % 32, '\0');
    b.append(type == 2 ? 36 : 256, '\0');
    b.append((32 - b.size() % 32) % 32, '\0');
    const fs::path p = dir / (arch + ".gguf");
    std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    return p;
  };
  CHECK_THROWS_WITH(assistgen::io::load_gguf_model(file("falcon", 0)),
                    Catch::Contains("general.architecture") && Catch::Contains("falcon"));
  CHECK_THROWS_AS(assistgen::io::load_gguf_model(file("falcon", 0)), assistgen::UnsupportedError);
  // gpt2 is supported (test_gguf_gpt2.cpp); without its hyper-parameters the key is named.
  CHECK_THROWS_WITH(assistgen::io::load_gguf_model(file("gpt2", 0)),
                    Catch::Contains("gpt2.embedding_length") && Catch::Contains("missing"));
  // A llama file missing its hyper-parameters names the key.
  CHECK_THROWS_WITH(assistgen::io::load_gguf_model(file("llama", 2)),
                    Catch::Contains("llama.embedding_length") && Catch::Contains("missing"));
  fs::remove_all(dir);
}

TEST_CASE("gguf models: load_model on a .gguf reads the tokenizer next to it and generates as the HF directory") {
  const fs::path dir = fs::temp_directory_path() / ("assistgen_test_gguf_load_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "hf");
  fs::create_directories(dir / "gguf");
  for (const auto& e : fs::directory_iterator(kData / "models/llama-draft"))
    if (e.path().filename() != "golden.safetensors") fs::copy_file(e.path(), dir / "hf" / e.path().filename());
  fs::copy_file(kData / "gguf/llama-draft-f32.gguf", dir / "gguf/model.gguf");
  for (const auto& e : fs::directory_iterator(kData / "text/char")) {
    fs::copy_file(e.path(), dir / "hf" / e.path().filename());
    fs::copy_file(e.path(), dir / "gguf" / e.path().filename());
  }
  const assistgen::Model hf = assistgen::load_model(dir / "hf");
  const assistgen::Model gg = assistgen::load_model(dir / "gguf/model.gguf");
  const assistgen::GenerateOptions opts{.max_new_tokens = 12};
  const auto a = hf.generate("And God said", opts);
  const auto b = gg.generate("And God said", opts);
  CHECK(a.text == b.text);
  CHECK(a.tokens == b.tokens);
  // Without a tokenizer.json next to it, the error names the file looked for.
  fs::remove(dir / "gguf/tokenizer.json");
  CHECK_THROWS_WITH(assistgen::load_model(dir / "gguf/model.gguf"), Catch::Contains("tokenizer.json"));
  fs::remove_all(dir);
}

// A gpt2 GGUF file written by tools/make_gguf.py as llama.cpp's converter
// writes GPT2Model (Conv1D weights transposed to [out, in], the tied head
// copied to output.weight, the mask buffers dropped) loads as the Hugging
// Face directory it came from: the same config and the same logits bit for
// bit (F32: the same values through the same kernels), at f32 and at bf16.
#include <catch2/catch.hpp>
#include <filesystem>
#include <optional>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/io/gguf.hpp"

namespace fs = std::filesystem;
using assistgen::DType;
using assistgen::cpu::Transformer;

TEST_CASE("gguf gpt2: logits equal the HF directory's bit for bit") {
  const fs::path data(ASSISTGEN_TEST_DATA_DIR);
  const assistgen::io::GgufModel m =
      assistgen::io::load_gguf_model(data / "gguf" / "gpt2-target-f32.gguf");
  CHECK(m.config.architecture == "GPT2LMHeadModel");
  CHECK(m.config.tie_word_embeddings);
  CHECK(m.config.max_position_embeddings == 64);
  CHECK(m.config.intermediate_size == 128);
  for (const auto dtype : {std::optional<DType>{}, std::optional<DType>{DType::bf16}}) {
    INFO((dtype ? "bf16" : "unset"));
    const Transformer hf = Transformer::load(data / "models" / "gpt2-target", {.dtype = dtype});
    const Transformer gg =
        Transformer::load(data / "gguf" / "gpt2-target-f32.gguf", {.dtype = dtype});
    CHECK(gg.dtype() == hf.dtype());
    std::vector<assistgen::Token> ids;
    for (int i = 0; i < 40; ++i) ids.push_back((i * 53 + 7) % 256);
    auto c1 = hf.make_cache(ids.size()), c2 = gg.make_cache(ids.size());
    const auto a = hf.forward(ids, c1), b = gg.forward(ids, c2);
    REQUIRE(a.rows() == b.rows());
    CHECK(std::vector<float>(a.data(), a.data() + a.rows() * a.cols()) ==
          std::vector<float>(b.data(), b.data() + b.rows() * b.cols()));
  }
}

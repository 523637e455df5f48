// GGUF's quantized types (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K; files written by
// tools/make_gguf.py's own quantizers) and --dtype int4:
//   - each stored block decodes to within its quantization step of the
//     Hugging Face weights it was made from, and the decoded floats are
//     ggml's dequantization of the group form the kernels use;
//   - loaded at an unset dtype, the grouped kernels compute with the stored
//     codes (dtype i4), their logits stay near the f32 computation on the
//     same (dequantized) weights and near the HF directory's;
//   - a token's logits are the same bits in a prefill, a verification pass
//     and a one-token decode;
//   - a non-finite block scale is a FormatError naming the tensor.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/io/gguf.hpp"

namespace fs = std::filesystem;
using assistgen::DType;
using assistgen::cpu::Transformer;

namespace {

const fs::path kData(ASSISTGEN_TEST_DATA_DIR);

std::vector<assistgen::Token> prompt(std::size_t vocab, std::size_t n = 24) {
  std::vector<assistgen::Token> ids;
  for (std::size_t i = 0; i < n; ++i)
    ids.push_back(static_cast<assistgen::Token>((i * 37 + 5) % vocab));
  return ids;
}

std::vector<float> logits_of(const Transformer& t, const std::vector<assistgen::Token>& ids) {
  auto cache = t.make_cache(ids.size());
  const auto out = t.forward(ids, cache);
  return std::vector<float>(out.data(), out.data() + ids.size() * t.vocab_size());
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

double range_of(const std::vector<float>& a) {
  const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
  return double(*hi) - *lo;
}

struct File {
  const char* dir;
  const char* gguf;
};
const File kFiles[] = {
    {"llama-draft", "llama-draft-q4_0.gguf"},  // Q4_0, permuted Q/K, GQA
    {"llama-256", "llama-256-q4_0.gguf"},      // Q4_0, tied
    {"llama-256", "llama-256-q4_k_m.gguf"},    // Q4_K + Q6_K (attn_v) + Q8_0 fallback
    {"llama-draft", "llama-draft-q8_0.gguf"},  // Q8_0: 8-bit codes, scale d, min 128 d
    {"llama-draft", "llama-draft-q5_0.gguf"}};  // Q5_0: 5-bit codes in a byte, scale d, min 16 d

}  // namespace

TEST_CASE("gguf Q4_0 / Q4_K / Q6_K blocks decode to within a step of the HF weights") {
  for (const File& f : kFiles) {
    INFO(f.gguf);
    const assistgen::io::GgufModel m = assistgen::io::load_gguf_model(kData / "gguf" / f.gguf);
    const assistgen::io::Checkpoint hf(kData / "models" / f.dir);
    std::size_t checked = 0, two_level = 0;
    for (const auto& name : m.weights.names()) {
      const assistgen::io::TensorView& v = m.weights.tensor(name);
      if (!v.quantized) continue;
      INFO(name);
      const assistgen::io::GroupQuantized g = v.quantized();
      if (g.super) {
        // Q4_K and Q6_K: the second level (d, dmin and the sub-block codes)
        // gives exactly the per-group scales and mins.
        ++two_level;
        CHECK(g.super * g.group == 256);
        CHECK(g.two_level_exact());
      }
      const std::vector<float> dec = v.to_float(), ref = hf.tensor(name).to_float();
      REQUIRE(dec.size() == ref.size());
      REQUIRE(g.rows * g.cols == dec.size());
      for (std::size_t r = 0; r < g.rows; ++r)
        for (std::size_t c0 = 0; c0 < g.cols; c0 += g.group) {
          float lo = ref[r * g.cols + c0], hi = lo;
          for (std::size_t c = c0; c < c0 + g.group; ++c)
            lo = std::min(lo, ref[r * g.cols + c]), hi = std::max(hi, ref[r * g.cols + c]);
          for (std::size_t c = c0; c < c0 + g.group; ++c) {
            const std::size_t i = r * g.cols + c;
            const std::size_t gi = r * g.groups_per_row() + c / g.group;
            // ggml rounds scale * q (exact here) and the difference: one rounding of the value.
            CHECK(std::abs(double(dec[i]) - g.value(r, c)) <=
                  std::ldexp(std::abs(double(g.scale[gi]) * g.q[i]) + std::abs(double(g.min[gi])),
                             -24));
            // within the group's range / 10 (a 4-bit step is range / 15, 6-bit finer)
            CHECK(std::abs(double(dec[i]) - ref[i]) <= (double(hi) - lo) / 10 + 1e-7);
          }
        }
      ++checked;
    }
    CHECK(checked >= 5);
    CHECK((two_level > 0) == std::string(f.gguf).ends_with("q4_k_m.gguf"));
  }
}

TEST_CASE(
    "gguf Q4 files compute with their stored codes, near the f32 logits and the HF directory's") {
  for (const File& f : kFiles) {
    INFO(f.gguf);
    const fs::path path = kData / "gguf" / f.gguf;
    const Transformer q = Transformer::load(path);
    CHECK(q.dtype() == DType::i4);
    CHECK(Transformer::load(path, {.dtype = DType::i4}).dtype() == DType::i4);
    const Transformer deq =
        Transformer::load(path, {.dtype = DType::f32});  // ggml's dequantized floats
    const Transformer hf = Transformer::load(kData / "models" / f.dir, {.dtype = DType::f32});
    CHECK(q.bytes_per_token() < deq.bytes_per_token() / 2);
    const auto ids = prompt(q.vocab_size());
    const std::vector<float> lq = logits_of(q, ids), ld = logits_of(deq, ids),
                             lh = logits_of(hf, ids);
    // Every matmul of these files is in a type with a group form (the
    // Q4_K_M file's ffn_down fell back to Q8_0), so dtype i4 keeps all
    // their codes and gives the unset dtype's bits.
    CHECK(logits_of(Transformer::load(path, {.dtype = DType::i4}), ids) == lq);
    const double d_deq = max_abs_diff(lq, ld), d_hf = max_abs_diff(lq, lh), r = range_of(lh);
    std::size_t agree = 0;
    const std::size_t v = q.vocab_size();
    for (std::size_t i = 0; i < ids.size(); ++i)
      agree += std::max_element(lq.begin() + i * v, lq.begin() + (i + 1) * v) - lq.begin() ==
               std::max_element(lh.begin() + i * v, lh.begin() + (i + 1) * v) - lh.begin();
    INFO("|q - dequantized f32| " << d_deq << ", |q - hf| " << d_hf << ", range " << r
                                  << ", top-1 agreement with hf " << agree << " of " << ids.size());
    CHECK(d_deq <= 0.03 * r);  // the activations' int8 rounding only (measured <= 0.02 r)
    // plus the file's 4-bit weights (measured <= 0.21 r; llama-256's logits
    // have near-ties by design, so top-1 agreement is not a measure here:
    // docs/gguf.md gives KL and agreement on the demo target's text)
    CHECK(d_hf <= 0.25 * r);
  }
}

TEST_CASE("gguf Q4_K_M logits are the same bits however the tokens are batched") {
  const Transformer t = Transformer::load(kData / "gguf" / "llama-256-q4_k_m.gguf");
  const auto ids = prompt(t.vocab_size(), 20);
  const std::vector<float> all = logits_of(t, ids);
  auto cache = t.make_cache(ids.size());
  std::size_t pos = 0;
  for (std::size_t n : {1, 3, 1, 7, 2, 6}) {  // decode steps and verification passes
    const std::vector<assistgen::Token> chunk(ids.begin() + pos, ids.begin() + pos + n);
    const auto out = t.forward(chunk, cache);
    CHECK(std::memcmp(out.data(), all.data() + pos * t.vocab_size(),
                      n * t.vocab_size() * sizeof(float)) == 0);
    pos += n;
  }
  CHECK(pos == ids.size());
}

TEST_CASE("dtype int4 quantizes an HF checkpoint in groups of 32 at load") {
  for (const char* dir : {"llama-256", "llama-draft", "qwen2-real", "gpt2-target"}) {
    INFO(dir);
    const Transformer q = Transformer::load(kData / "models" / dir, {.dtype = DType::i4});
    const Transformer f = Transformer::load(kData / "models" / dir, {.dtype = DType::f32});
    CHECK(q.dtype() == DType::i4);
    const auto ids = prompt(q.vocab_size(), 12);
    const std::vector<float> lq = logits_of(q, ids), lf = logits_of(f, ids);
    INFO("|int4 - f32| " << max_abs_diff(lq, lf) << " of range " << range_of(lf));
    CHECK(max_abs_diff(lq, lf) <= 0.15 * range_of(lf));
  }
}

TEST_CASE("gguf: a non-finite Q4_K block scale is a FormatError naming the tensor") {
  const fs::path src = kData / "gguf" / "llama-256-q4_k_m.gguf";
  const assistgen::io::GgufFile g(src);
  const auto& t = g.tensor("blk.0.attn_q.weight");
  REQUIRE(t.type == assistgen::io::GgmlType::q4_k);
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t at = g.data_offset() + t.offset + 144 * 3;  // block 3's d
  bytes[at] = 0x00;
  bytes[at + 1] = 0x7c;  // +inf in binary16
  const fs::path bad =
      fs::temp_directory_path() / ("assistgen-q4k-" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(bad, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  for (const auto dtype : {std::optional<DType>{}, std::optional<DType>{DType::f32}}) {
    CHECK_THROWS_AS(Transformer::load(bad, {.dtype = dtype}), assistgen::FormatError);
    // the stored codes (unset dtype) name the file's tensor, the floats (f32) its HF name
    CHECK_THROWS_WITH(Transformer::load(bad, {.dtype = dtype}),
                      Catch::Contains(dtype ? "q_proj.weight" : "blk.0.attn_q.weight"));
  }
  fs::remove(bad);
}

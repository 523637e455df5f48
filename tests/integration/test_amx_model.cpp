// cpu::Transformer on the AMX path (Isa::amx: bf16 and int8 matmuls on
// tiles), on random checkpoints of several families:
//  - whole-model logits are the bits of the scalar reference of the AMX
//    order (Isa::scalar_amx), for f32, bf16 and int8 weights;
//  - a position's logits are bit-identical whether it is decoded alone,
//    verified in a block of M = 1..40 tokens (across the 16-row tile blocks)
//    or prefilled, with two threads forced to split every call;
//  - the AVX-512 path forced on an AMX CPU keeps its own invariance.
// Every case skips visibly where AMX is absent or Linux refused the tile state.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "../../src/cpu/kernels.hpp"   // private: set_isa, isa_available
#include "../../src/cpu/parallel.hpp"  // private: force_split
#include "assistgen/cpu/transformer.hpp"
#include "random_models.hpp"
#include "test_skip.hpp"

using namespace assistgen;
using cpu::Transformer;
using namespace assistgen::testing_models;
namespace kd = assistgen::cpu::detail;

namespace {

struct IsaGuard {
  kd::Isa saved = kd::active_isa();
  ~IsaGuard() { kd::set_isa(saved); }
};

struct ForceSplit {
  ForceSplit() { kd::force_split(true); }
  ~ForceSplit() { kd::force_split(false); }
  ForceSplit(const ForceSplit&) = delete;
  ForceSplit& operator=(const ForceSplit&) = delete;
};

#define SKIP_WITHOUT_AMX()                                                  \
  if (!kd::isa_available(kd::Isa::amx))                                     \
  ASSISTGEN_SKIP(                                                           \
      "no AMX (AMX-TILE/BF16/INT8) on this CPU, or Linux refused the tile " \
      "state: the AMX path was not run")

// Logits of prefill(15), a block of 7 and one decode step, as 23 rows.
Logits three_calls(const Transformer& m, std::span<const Token> tokens) {
  auto cache = m.make_cache(tokens.size());
  const Logits prefill = m.forward(tokens.first(15), cache);
  const Logits block = m.forward(tokens.subspan(15, 7), cache);
  const Logits step = m.forward(tokens.last(1), cache);
  Logits all(tokens.size(), m.vocab_size());
  std::memcpy(all.row(0).data(), prefill.data(), 15 * m.vocab_size() * sizeof(float));
  std::memcpy(all.row(15).data(), block.data(), 7 * m.vocab_size() * sizeof(float));
  std::memcpy(all.row(22).data(), step.data(), m.vocab_size() * sizeof(float));
  return all;
}

// Every position of `tokens` after `prefix`, verified in blocks of mm, on
// the active Isa, against the one-token decode of each.
void check_blocks(const Transformer& m, std::span<const Token> tokens, std::size_t prefix,
                  std::size_t max_m) {
  require_blocks_and_prefill(m, tokens, decode_each(m, tokens), prefix, sizes_up_to(max_m));
}

}  // namespace

TEST_CASE("whole-model logits: the AMX kernels give the bits of their scalar reference",
          "[invariance][isa][amx]") {
  SKIP_WITHOUT_AMX();
  const IsaGuard guard;
  for (const DType dtype : {DType::f32, DType::bf16, DType::i8}) {
    for (const std::string family : {"llama", "qwen2", "gpt2"}) {
      INFO(family << " " << name_of(dtype));
      const Transformer m = Transformer::random(config(family), 7, {.dtype = dtype, .threads = 1});
      const auto tokens = some_tokens(23, m.vocab_size());
      kd::set_isa(kd::Isa::scalar_amx);
      REQUIRE(kd::active_isa() == kd::Isa::scalar_amx);
      const Logits ref = three_calls(m, tokens);
      kd::set_isa(kd::Isa::amx);
      REQUIRE(kd::active_isa() == kd::Isa::amx);
      const Logits got = three_calls(m, tokens);
      for (std::size_t r = 0; r < tokens.size(); ++r) {
        INFO("row " << r);
        REQUIRE(same_row(ref, r, got, r));
      }
    }
  }
}

TEST_CASE("on the AMX path, decode, verification of M = 1..40 and prefill give the same bits",
          "[invariance][amx]") {
  SKIP_WITHOUT_AMX();
  const IsaGuard guard;
  kd::set_isa(kd::Isa::amx);
  const DType dtype = GENERATE(DType::bf16, DType::i8);
  const std::string family = GENERATE("llama", "gpt2");
  INFO(family << " " << name_of(dtype));
  const Transformer m = Transformer::random(config(family), 5, {.dtype = dtype, .threads = 2});
  const ForceSplit force;
  const auto tokens = some_tokens(5 + 40, m.vocab_size());
  check_blocks(m, tokens, 5, 40);
}

TEST_CASE("the AVX-512 path forced on an AMX CPU keeps its batch invariance", "[invariance][amx]") {
  SKIP_WITHOUT_AMX();
  const IsaGuard guard;
  kd::set_isa(kd::Isa::avx512);
  REQUIRE(kd::active_isa() == kd::Isa::avx512);
  const DType dtype = GENERATE(DType::bf16, DType::i8);
  INFO(name_of(dtype));
  const Transformer m = Transformer::random(config("llama"), 5, {.dtype = dtype, .threads = 2});
  const ForceSplit force;
  const auto tokens = some_tokens(5 + 20, m.vocab_size());
  check_blocks(m, tokens, 5, 20);
}

// The model families beyond Llama: GPT-2 (learned positions, LayerNorm,
// Conv1D weights with and without the "transformer." prefix, n_positions
// limit), Mistral's sliding window (goldens three windows long, rollback
// across the window edge equal to a fresh run) and a real-layout Qwen2; plus
// assisted greedy decoding with GPT-2 and windowed targets, which must give
// the target's own greedy output. Plain golden logits/greedy/truncate checks
// for every model directory live in test_transformer_golden.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "assistgen/architecture.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/io/safetensors.hpp"
#include "integration/golden_data.hpp"
#include "assistgen/speculative_decoder.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {

using golden::argmax;
using golden::kModels;
using golden::read_ids;

// Rows [first, first + ours.rows()) of the reference `ref` [*, vocab]:
// max |ours - ref| <= 1e-3 * max |ref| and the same argmax (the bar of
// tests/data/README.md).
void check_close(const Logits& ours, const std::vector<float>& ref, std::size_t first, const std::string& what) {
  INFO(what);
  const std::size_t V = ours.cols();
  REQUIRE((first + ours.rows()) * V <= ref.size());
  float max_ref = 0, max_diff = 0;
  for (std::size_t r = 0; r < ours.rows(); ++r)
    for (std::size_t v = 0; v < V; ++v) {
      const float g = ref[(first + r) * V + v];
      max_ref = std::max(max_ref, std::abs(g));
      max_diff = std::max(max_diff, std::abs(ours.row(r)[v] - g));
    }
  CHECK(max_diff <= 1e-3f * max_ref);
  for (std::size_t r = 0; r < ours.rows(); ++r)
    CHECK(argmax(ours.row(r)) == argmax(std::span<const float>(ref.data() + (first + r) * V, V)));
}

float max_abs_diff(const Logits& a, const Logits& b, std::size_t b_first = 0) {
  float d = 0;
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t v = 0; v < a.cols(); ++v) d = std::max(d, std::abs(a.row(r)[v] - b.row(b_first + r)[v]));
  return d;
}

struct Golden {
  explicit Golden(const fs::path& dir) : file(dir / "golden.safetensors") {}
  io::SafetensorsFile file;
  std::vector<Token> ids(const char* name) const { return read_ids(file.tensor(name)); }
  std::vector<float> floats(const char* name) const { return file.tensor(name).to_float(); }
};

GenerationResult assisted(const cpu::Transformer& draft, const cpu::Transformer& target,
                          std::span<const Token> prompt, std::size_t n, std::size_t k, DraftLengthSchedule schedule) {
  SpeculativeDecoder decoder(draft, target,
                             GenerationConfig{.max_new_tokens = n, .num_assistant_tokens = k, .schedule = schedule});
  return decoder.generate(prompt);
}

}  // namespace

// ---------------------------------------------------------------------------
// Mistral sliding window (window 8)

TEST_CASE("mistral-window: the golden three windows long, in one call and in chunks", "[families][window]") {
  const auto dir = kModels / "mistral-window";
  auto model = cpu::Transformer::load(dir);
  REQUIRE(model.config().sliding_window == 8);
  Golden g(dir);
  const auto tokens = g.ids("tokens_long");
  const auto ref = g.floats("logits_long");
  REQUIRE(tokens.size() == 24);
  const std::span<const Token> all(tokens);

  auto cache = model.make_cache(32);
  check_close(model.forward(all, cache), ref, 0, "one prefill of 24 tokens");

  // Chunks of 5 put the window edge (positions 7/8, 15/16) inside a call.
  auto chunked = model.make_cache(32);
  for (std::size_t at = 0; at < tokens.size(); at += 5) {
    const std::size_t len = std::min<std::size_t>(5, tokens.size() - at);
    check_close(model.forward(all.subspan(at, len), chunked), ref, at, "chunk at " + std::to_string(at));
  }
}

TEST_CASE("mistral-window: the window changes exactly the rows past it", "[families][window]") {
  // The same weights with the window removed agree on rows 0..7 (no key is
  // out of the window yet) and must differ from row 8 on.
  const auto dir = kModels / "mistral-window";
  ModelConfig full = ModelConfig::load(dir / "config.json");
  full.sliding_window = 0;
  io::Checkpoint ck(dir);
  auto unwindowed = cpu::Transformer::from_checkpoint(full, ck);
  auto windowed = cpu::Transformer::load(dir);
  const auto tokens = Golden(dir).ids("tokens_long");
  auto c1 = windowed.make_cache(32), c2 = unwindowed.make_cache(32);
  const Logits a = windowed.forward(tokens, c1), b = unwindowed.forward(tokens, c2);
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    float d = 0, scale = 0;
    for (std::size_t v = 0; v < a.cols(); ++v) {
      d = std::max(d, std::abs(a.row(r)[v] - b.row(r)[v]));
      scale = std::max(scale, std::abs(b.row(r)[v]));
    }
    INFO("row " << r);
    if (r < 8)
      CHECK(d <= 1e-5f * scale);
    else
      CHECK(d > 1e-2f * scale);
  }
}

TEST_CASE("mistral-window: truncate across the window edge equals a fresh run", "[families][window][rollback]") {
  const auto dir = kModels / "mistral-window";
  auto model = cpu::Transformer::load(dir);
  Golden g(dir);
  const auto tokens = g.ids("tokens_long");
  const auto ref = g.floats("logits_long");
  const std::span<const Token> all(tokens);
  auto fresh_cache = model.make_cache(40);
  const Logits fresh = model.forward(all, fresh_cache);
  const std::vector<Token> junk{5, 9, 11, 250, 3, 77, 1, 60, 61};  // more than a window

  // Below, at and past the window edge, and back across it from far past it.
  for (std::size_t n : {0, 1, 5, 7, 8, 9, 15, 16, 17, 23}) {
    for (std::size_t filled : {n, std::size_t{24}}) {
      auto cache = model.make_cache(40);
      model.forward(all.subspan(0, std::max<std::size_t>(filled, 1)), cache);
      model.forward(junk, cache);  // rejected drafts
      cache.truncate(n);
      REQUIRE(cache.size() == n);
      const Logits again = model.forward(all.subspan(n), cache);
      INFO("truncated to " << n << " after " << std::max<std::size_t>(filled, 1) << " + junk");
      CHECK(max_abs_diff(again, fresh, n) <= 1e-5f);
      check_close(again, ref, n, "after truncate to " + std::to_string(n));
    }
  }
}

TEST_CASE("mistral-window: speculative rounds of verify-and-reject keep fresh-run logits",
          "[families][window][rollback]") {
  // What the decoder does: append K+1 rows, keep some, roll back, go on,
  // while the sequence grows three windows past the start.
  const auto dir = kModels / "mistral-window";
  auto model = cpu::Transformer::load(dir);
  Golden g(dir);
  const auto tokens = g.ids("tokens_long");
  const auto ref = g.floats("logits_long");
  auto cache = model.make_cache(40);
  std::size_t pos = 0, round = 0;
  while (pos < tokens.size()) {
    const std::size_t k = std::min<std::size_t>(1 + round % 4, tokens.size() - pos);
    std::vector<Token> step(tokens.begin() + static_cast<std::ptrdiff_t>(pos),
                            tokens.begin() + static_cast<std::ptrdiff_t>(pos + k));
    step.push_back(static_cast<Token>((round * 37 + 11) % 256));  // a wrong guess after them
    const Logits out = model.forward(step, cache);
    Logits kept(k, model.vocab_size());
    for (std::size_t r = 0; r < k; ++r) std::copy_n(out.row(r).data(), model.vocab_size(), kept.row(r).data());
    check_close(kept, ref, pos, "round " + std::to_string(round));
    pos += k;
    cache.truncate(pos);
    ++round;
  }
}

TEST_CASE("windowed targets: assisted greedy equals the target's greedy", "[families][window][assisted]") {
  const auto dir = kModels / "mistral-window";
  auto target = cpu::Transformer::load(dir);
  auto draft = cpu::Transformer::load(kModels / "llama-draft");  // same vocabulary, unrelated weights
  Golden g(dir);
  const auto prompt = g.ids("greedy_prompt");
  const auto expected = g.ids("greedy_ids");  // positions 6..21: past two windows
  for (std::size_t k : {1, 3, 6}) {
    INFO("K = " << k);
    CHECK(assisted(draft, target, prompt, expected.size(), k, DraftLengthSchedule::constant).tokens == expected);
    CHECK(assisted(target, target, prompt, expected.size(), k, DraftLengthSchedule::heuristic).tokens == expected);
  }
}

TEST_CASE("per-layer windows (Qwen2 max_window_layers) roll back exactly", "[families][window][rollback]") {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.attention_bias = true;
  c.sliding_window = 4;
  c.sliding_layers = {false, true, true};
  auto model = cpu::Transformer::random(c, 42);
  std::vector<Token> tokens(20);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<Token>((i * 13 + 5) % 64);
  auto fresh_cache = model.make_cache(32);
  const Logits fresh = model.forward(tokens, fresh_cache);
  for (std::size_t n : {2, 4, 5, 11}) {
    auto cache = model.make_cache(32);
    model.forward(tokens, cache);
    cache.truncate(n);
    const Logits again = model.forward(std::span<const Token>(tokens).subspan(n), cache);
    INFO("truncated to " << n);
    // Batch-invariant kernels: the same bits as the fresh prefill.
    CHECK(max_abs_diff(again, fresh, n) == 0.0f);
  }
  // And the window is in effect: without it, exactly the rows at positions
  // >= 4 (which see more than 4 positions) change; rows 0..3 see the same
  // positions either way and keep their bits (same seed, same weights).
  c.sliding_layers.clear();
  c.sliding_window = 0;
  auto full = cpu::Transformer::random(c, 42);
  auto full_cache = full.make_cache(32);
  const Logits f = full.forward(tokens, full_cache);
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    INFO("row " << r);
    float d = 0;
    for (std::size_t v = 0; v < f.cols(); ++v) d = std::max(d, std::abs(fresh.row(r)[v] - f.row(r)[v]));
    if (r < 4)
      CHECK(d == 0.0f);
    else
      CHECK(d > 1e-4f);
  }
}

// ---------------------------------------------------------------------------
// GPT-2

TEST_CASE("gpt2: both checkpoint flavours load as GPT-2", "[families][gpt2]") {
  // gpt2-target: no "transformer." prefix, with attn.bias / attn.masked_bias
  // buffers (as the hub's gpt2 model.safetensors); gpt2-draft: the prefix and
  // a stored copy of the tied lm_head.
  io::Checkpoint target_ck(kModels / "gpt2-target"), draft_ck(kModels / "gpt2-draft");
  CHECK(target_ck.contains("h.0.attn.c_attn.weight"));
  CHECK(target_ck.contains("h.0.attn.bias"));
  CHECK(draft_ck.contains("transformer.h.0.attn.c_attn.weight"));
  CHECK(draft_ck.contains("lm_head.weight"));
  for (const char* name : {"gpt2-target", "gpt2-draft"}) {
    auto m = cpu::Transformer::load(kModels / name);
    CHECK(m.config().architecture == "GPT2LMHeadModel");
    CHECK(m.config().positions == PositionKind::learned);
    CHECK(m.config().max_position_embeddings == 64);
    CHECK(m.vocab_size() == 256);
  }
}

TEST_CASE("gpt2: n_positions is a hard limit", "[families][gpt2]") {
  auto model = cpu::Transformer::load(kModels / "gpt2-target");
  const std::size_t limit = model.config().max_position_embeddings;
  std::vector<Token> tokens(limit + 1);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<Token>((i * 7 + 3) % 256);
  auto cache = model.make_cache(limit + 8);  // the cache could hold more; the positions cannot
  REQUIRE_THROWS_AS(model.forward(tokens, cache), CapacityError);
  REQUIRE_THROWS_WITH(model.forward(tokens, cache), Catch::Contains("n_positions") && Catch::Contains("64"));
  REQUIRE(cache.size() == 0);
  model.forward(std::span<const Token>(tokens).first(limit), cache);  // exactly n_positions fit
  REQUIRE(cache.size() == limit);
  REQUIRE_THROWS_AS(model.forward(std::span<const Token>(tokens).last(1), cache), CapacityError);
  REQUIRE(cache.size() == limit);
  cache.truncate(limit - 1);
  CHECK(model.forward(std::span<const Token>(tokens).last(1), cache).rows() == 1);
}

TEST_CASE("gpt2: assisted greedy with the smaller gpt2 draft equals the target's greedy",
          "[families][gpt2][assisted]") {
  auto target = cpu::Transformer::load(kModels / "gpt2-target");
  auto draft = cpu::Transformer::load(kModels / "gpt2-draft");
  Golden g(kModels / "gpt2-target");
  const auto prompt = g.ids("greedy_prompt");
  const auto expected = g.ids("greedy_ids");
  for (std::size_t k : {1, 2, 4, 7}) {
    for (DraftLengthSchedule s : {DraftLengthSchedule::constant, DraftLengthSchedule::heuristic}) {
      INFO("K = " << k << ", schedule " << static_cast<int>(s));
      const auto res = assisted(draft, target, prompt, expected.size(), k, s);
      CHECK(res.tokens == expected);
      // A draft model proposes every token it is allowed (no confidence
      // stop); each round emits its accepted tokens plus one from the target.
      const auto& st = res.stats;
      CHECK(st.drafted == st.k_sum);
      CHECK(st.accepted <= st.drafted);
      CHECK(st.target_calls == st.rounds);
      CHECK(st.new_tokens == st.accepted + st.rounds);
      if (s == DraftLengthSchedule::constant) CHECK(st.k_sum <= k * st.rounds);
      // Every round but a last one with a single token left drafts something.
      CHECK(st.drafted + 1 >= st.rounds);
    }
  }
  // Longer than the golden, up to the last position n_positions allows: the
  // plain greedy decoder is the reference there.
  const std::size_t n = target.config().max_position_embeddings - prompt.size();
  AutoregressiveDecoder plain(target, GenerationConfig{.max_new_tokens = n});
  const auto want = plain.generate(prompt).tokens;
  REQUIRE(want.size() == n);
  CHECK(assisted(draft, target, prompt, n, 5, DraftLengthSchedule::heuristic).tokens == want);
  // A draft that always agrees: every round takes the bonus token.
  const auto self = assisted(target, target, prompt, n, 4, DraftLengthSchedule::constant);
  CHECK(self.tokens == want);
  CHECK(self.stats.accepted == self.stats.drafted);
}

TEST_CASE("gpt2: a Linear-layout c_attn (not Conv1D) is a clear error", "[families][gpt2]") {
  // Store one Conv1D weight in nn.Linear's [out, in] order: the shape check
  // must name the tensor rather than load transposed garbage.
  const fs::path src = kModels / "gpt2-draft";
  const fs::path dir = fs::temp_directory_path() / ("assistgen_gpt2_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(src / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  io::SafetensorsFile f(src / "model.safetensors");
  std::vector<io::TensorView> tensors;
  for (const auto& name : f.names()) {
    io::TensorView t = f.tensor(name);
    if (name == "transformer.h.0.attn.c_attn.weight") std::swap(t.shape[0], t.shape[1]);
    tensors.push_back(t);
  }
  io::write_safetensors(dir / "model.safetensors", tensors);
  REQUIRE_THROWS_AS(cpu::Transformer::load(dir), FormatError);
  REQUIRE_THROWS_WITH(cpu::Transformer::load(dir),
                      Catch::Contains("transformer.h.0.attn.c_attn.weight") && Catch::Contains("Conv1D"));
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------
// Qwen2 real layout, registry

TEST_CASE("qwen2-real: a Qwen2.5-style config with use_sliding_window false loads without a window",
          "[families][qwen2]") {
  auto model = cpu::Transformer::load(kModels / "qwen2-real");
  const auto& c = model.config();
  CHECK(c.architecture == "Qwen2ForCausalLM");
  CHECK(c.sliding_window == 0);
  CHECK(c.tie_word_embeddings);
  CHECK(c.attention_bias);
  CHECK(c.head_dim == 8);  // 56 / 7: no head_dim key
  CHECK(c.num_attention_heads / c.num_key_value_heads == 7);
  CHECK(c.rope_theta == 1e6);
}

TEST_CASE("an unregistered architecture in config.json is an error listing the supported ones", "[families]") {
  const fs::path dir = fs::temp_directory_path() / ("assistgen_falcon_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"architectures": ["FalconForCausalLM"], "vocab_size": 8})";
  REQUIRE_THROWS_AS(cpu::Transformer::load(dir), UnsupportedError);
  REQUIRE_THROWS_WITH(cpu::Transformer::load(dir), Catch::Contains("FalconForCausalLM") &&
                                                       Catch::Contains(supported_architectures()));
  fs::remove_all(dir);
}

// Sizes driven by options (issue #23): options_for(positions) is what the
// CLI's hpu-ref backend asks for; however many positions a user requests, the
// warm-up compiles no kv_len bucket past the model's max_position_embeddings,
// and a cache past it is a CapacityError naming the model's limit, before any
// memory or compile time is spent on it.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

#include "assistgen/error.hpp"
#include "assistgen/hpu/transformer.hpp"

using namespace assistgen;

namespace {
const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
}

TEST_CASE("options_for with 2^24 positions warms up only the model's positions", "[hpu][hostile]") {
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t compiled = 0;
  auto dev = hpu::make_cpu_reference_device();
  hpu::LoadOptions o = hpu::options_for(std::size_t{1} << 24, dev);
  o.compile = [&](const hpu::Graph& g) {
    ++compiled;
    return dev->compile(g);
  };
  const auto m = hpu::Transformer::load(kModels / "llama-draft", o);  // max_position_embeddings 128
  for (const auto& b : m.warmup_buckets()) CHECK(b.kv_len <= 128);
  CHECK(compiled == m.warmup_buckets().size());
  CHECK(m.bucketing().max_kv_len() == 128);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 30.0);
  try {
    (void)m.make_cache(std::size_t{1} << 24);
    FAIL("no exception");
  } catch (const CapacityError& e) {
    CHECK_THAT(e.what(), Catch::Contains("max_position_embeddings (128"));
  }
  auto c = m.make_cache(128);  // the model's own positions still fit
  CHECK(c.capacity() == 128);
}

TEST_CASE("explicit buckets are used as given (RoPE runs past max_position_embeddings)",
          "[hpu][hostile]") {
  hpu::LoadOptions o;
  o.buckets.kv_len = {32, 32, 256};
  const auto m = hpu::Transformer::load(kModels / "llama-draft", o);
  CHECK(m.bucketing().max_kv_len() == 256);
  CHECK(m.make_cache(200).capacity() == 200);
}

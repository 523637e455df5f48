// KvStorage: O(1) checked truncate, capacity errors that leave the cache
// unchanged; KvCacheManager: one cache per (model, sequence), reuse, bounds.
#include <catch2/catch.hpp>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/kv_cache.hpp"

using namespace assistgen;

namespace {
ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  return c;
}
}  // namespace

TEST_CASE("KvStorage truncate is checked and keeps rows", "[kv]") {
  KvStorage kv(2, 1, 4, 8);
  REQUIRE(kv.size() == 0);
  REQUIRE(kv.capacity() == 8);
  REQUIRE(kv.bytes() == 2 * 2 * 1 * 8 * 4 * sizeof(float));
  kv.key(1, 0, 2)[3] = 42.0f;
  kv.commit(5);
  REQUIRE(kv.size() == 5);
  REQUIRE_THROWS_AS(kv.truncate(6), InvalidArgument);
  REQUIRE_THROWS_WITH(kv.truncate(6), Catch::Contains("beyond size 5"));
  REQUIRE(kv.size() == 5);
  kv.truncate(3);
  REQUIRE(kv.size() == 3);
  REQUIRE(kv.key(1, 0, 2)[3] == 42.0f);  // rows below n are untouched
  kv.truncate(0);
  REQUIRE(kv.size() == 0);
}

TEST_CASE("KvStorage refuses to grow past capacity and stays unchanged", "[kv]") {
  KvStorage kv(1, 1, 2, 4);
  kv.commit(3);
  REQUIRE_THROWS_AS(kv.commit(2), CapacityError);
  REQUIRE_THROWS_WITH(kv.check_append(2), Catch::Contains("exceeds capacity 4"));
  REQUIRE(kv.size() == 3);
  kv.commit(1);
  REQUIRE(kv.size() == 4);
  REQUIRE_THROWS_AS(KvStorage(1, 1, 2, 0), InvalidArgument);
}

TEST_CASE("KvStorage clone is a deep copy", "[kv]") {
  KvStorage kv(1, 2, 2, 4);
  kv.value(0, 1, 1)[0] = 3.0f;
  kv.commit(2);
  KvStorage c = kv.clone();
  kv.value(0, 1, 1)[0] = 5.0f;
  REQUIRE(c.size() == 2);
  REQUIRE(c.value(0, 1, 1)[0] == 3.0f);
}

TEST_CASE("Transformer forward past capacity throws and leaves the cache unchanged", "[kv]") {
  auto model = cpu::Transformer::random(tiny_config(), 1);
  auto cache = model.make_cache(4);
  std::vector<Token> three{1, 2, 3};
  model.forward(three, cache);
  REQUIRE_THROWS_AS(model.forward(three, cache), CapacityError);
  REQUIRE(cache.size() == 3);
  std::vector<Token> one{4};
  REQUIRE(model.forward(one, cache).rows() == 1);
  REQUIRE(cache.size() == 4);
}

TEST_CASE("KvCacheManager hands out, reuses and bounds caches", "[kv]") {
  auto model = cpu::Transformer::random(tiny_config(), 2);
  KvCacheManager mgr;
  auto& a = mgr.acquire(model, 1, 16);
  auto& b = mgr.acquire(model, 2, 16);
  REQUIRE(&a != &b);
  REQUIRE(&mgr.acquire(model, 1, 8) == &a);  // same sequence, same cache
  REQUIRE(mgr.live_count() == 2);
  const std::size_t one = a.bytes();
  REQUIRE(mgr.bytes_in_use() == 2 * one);
  std::vector<Token> toks{1, 2};
  model.forward(toks, a);
  const auto* addr = &a;
  mgr.release(model, 1);
  REQUIRE(mgr.bytes_in_use() == one);
  REQUIRE(mgr.bytes_total() == 2 * one);
  auto& c = mgr.acquire(model, 3, 16);  // recycled, and empty again
  REQUIRE(&c == addr);
  REQUIRE(c.size() == 0);
  REQUIRE_THROWS_AS(mgr.acquire(model, 3, 32), CapacityError);

  KvCacheManager bounded(one + one / 2);
  bounded.acquire(model, 1, 16);
  REQUIRE_THROWS_WITH(bounded.acquire(model, 2, 16), Catch::Contains("would exceed the bound"));
  REQUIRE(bounded.live_count() == 1);
  mgr.trim();
  REQUIRE(mgr.bytes_total() == mgr.bytes_in_use());
}

// The LRU graph cache with an injected compile function that counts.
#include <catch2/catch.hpp>

#include "assistgen/hpu/graph_cache.hpp"

using namespace assistgen;
using namespace assistgen::hpu;

namespace {

// A one-gemm graph whose row count is the key's token bucket.
Graph gemm_graph(const GraphKey& k) {
  Graph g(k.kind);
  const auto t = static_cast<std::int64_t>(k.tokens);
  const int a = g.add_tensor("a", {t, 4}, DType::f32, TensorKind::input);
  const int w = g.add_tensor("w", {3, 4}, DType::f32, TensorKind::weight);
  const int y = g.add_tensor("y", {t, 3}, DType::f32, TensorKind::output);
  g.add_node(Op::gemm, "mm", {a, w}, {y}, {.transpose_b = true});
  return g;
}

GraphKey key(std::size_t tokens, std::string kind = "mm") {
  return {std::move(kind), DType::f32, 1, tokens, 16};
}

}  // namespace

TEST_CASE("graph cache: hits, misses and least-recently-used eviction", "[hpu][graph_cache]") {
  auto dev = make_cpu_reference_device();
  std::vector<GraphKey> compiled;
  GraphCache cache(2, [&](const Graph& g) {
    compiled.push_back(
        {g.kind(), DType::f32, 1, static_cast<std::size_t>(g.tensor(0).shape[0]), 16});
    return dev->compile(g);
  });
  const auto ra = cache.get(key(1), gemm_graph);
  cache.get(key(2), gemm_graph);
  CHECK(compiled.size() == 2);
  CHECK(cache.get(key(1), gemm_graph) == ra);  // hit: same recipe, no compile
  CHECK(compiled.size() == 2);
  CHECK(cache.keys() == std::vector<GraphKey>{key(1), key(2)});

  cache.get(key(4), gemm_graph);  // full: evicts key 2, the least recently used
  CHECK(compiled.size() == 3);
  CHECK(cache.contains(key(1)));
  CHECK_FALSE(cache.contains(key(2)));
  CHECK(cache.contains(key(4)));
  cache.get(key(2), gemm_graph);  // compiled again
  CHECK(compiled.size() == 4);
  CHECK(compiled.back() == key(2));

  // The kind and dtype are part of the key.
  cache.get(key(2, "other"), gemm_graph);
  CHECK(compiled.size() == 5);
  GraphKey bf = key(2);
  bf.dtype = DType::bf16;
  CHECK_FALSE(cache.contains(bf));

  const auto s = cache.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 5);
  CHECK(s.evictions == 3);
  CHECK(cache.size() == 2);
  // An evicted recipe stays valid for whoever still holds it.
  CHECK(ra->graph().kind() == "mm");
  CHECK(to_string(key(8)) == "mm/f32/b1/t8/kv16");
}

TEST_CASE("graph cache: bad construction and a failing compile", "[hpu][graph_cache]") {
  auto dev = make_cpu_reference_device();
  CHECK_THROWS_AS(GraphCache(0, [&](const Graph& g) { return dev->compile(g); }), InvalidArgument);
  CHECK_THROWS_AS(GraphCache(1, nullptr), InvalidArgument);
  GraphCache cache(1, [&](const Graph& g) { return dev->compile(g); });
  auto bad = [](const GraphKey& k) {
    Graph g = gemm_graph(k);
    g.add_node(Op::add, "bad", {0, 1}, {2});  // [t, 4] + [3, 4]: does not broadcast
    return g;
  };
  CHECK_THROWS_WITH(cache.get(key(3), bad), Catch::Contains("node 'bad'"));
  CHECK(cache.size() == 0);
  CHECK(cache.stats().misses == 0);
}

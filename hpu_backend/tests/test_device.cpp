// The CPU reference device executing IR ops, graph validation, launch
// bindings, and the static KV cache (index_copy writes, O(1) truncate, masks).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>

#include "assistgen/hpu/device.hpp"
#include "assistgen/hpu/kv_cache.hpp"

using namespace assistgen;
using namespace assistgen::hpu;

namespace {

template <class T>
DeviceBuffer upload(const std::shared_ptr<Device>& dev, const std::vector<T>& v) {
  DeviceBuffer b(dev, v.size() * sizeof(T));
  b.upload(v.data(), b.bytes());
  return b;
}

std::vector<float> download(const DeviceBuffer& b) {
  std::vector<float> v(b.bytes() / sizeof(float));
  b.download(v.data(), b.bytes());
  return v;
}

std::vector<float> iota(std::size_t n, float start = 0) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

}  // namespace

TEST_CASE("kv_write has index_copy semantics and kv_read reads a static prefix", "[hpu][device]") {
  auto dev = make_cpu_reference_device();
  // cache [1, 2, 5, 3]; src [1, 2, 2, 3] written at positions {3, 1}.
  Graph g("kv");
  const int c = g.add_tensor("cache", {1, 2, 5, 3}, DType::f32, TensorKind::state);
  const int idx = g.add_tensor("index", {2}, DType::i32, TensorKind::input);
  const int src = g.add_tensor("src", {1, 2, 2, 3}, DType::f32, TensorKind::input);
  const int rd = g.add_tensor("read", {1, 2, 4, 3}, DType::f32, TensorKind::output);
  g.add_node(Op::kv_write, "write", {c, idx, src}, {c});
  g.add_node(Op::kv_read, "read", {c}, {rd}, {.length = 4});
  const auto recipe = dev->compile(g);
  CHECK(recipe->workspace_bytes() == 0);

  auto cache = upload(dev, std::vector<float>(30, -1.0f));
  auto index = upload(dev, std::vector<std::int32_t>{3, 1});
  auto s = upload(dev, iota(12, 100));
  DeviceBuffer out(dev, 24 * sizeof(float));
  const std::vector<Binding> bind = {{"cache", cache.address()},
                                     {"index", index.address()},
                                     {"src", s.address()},
                                     {"read", out.address()}};
  dev->launch(*recipe, bind, 0);
  const auto cv = download(cache);
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t p = 0; p < 5; ++p)
      for (std::size_t d = 0; d < 3; ++d) {
        const float got = cv[(h * 5 + p) * 3 + d];
        if (p == 3)
          CHECK(got == 100.0f + static_cast<float>((h * 2 + 0) * 3 + d));
        else if (p == 1)
          CHECK(got == 100.0f + static_cast<float>((h * 2 + 1) * 3 + d));
        else
          CHECK(got == -1.0f);
      }
  const auto rv = download(out);
  for (std::size_t h = 0; h < 2; ++h)
    for (std::size_t i = 0; i < 12; ++i) CHECK(rv[h * 12 + i] == cv[h * 15 + i]);

  // An index outside the cache is an error naming the node.
  auto bad = upload(dev, std::vector<std::int32_t>{5, 0});
  std::vector<Binding> bad_bind = bind;
  bad_bind[1].address = bad.address();
  CHECK_THROWS_WITH(dev->launch(*recipe, bad_bind, 0), Catch::Contains("node 'write'"));
}

TEST_CASE("transpose, broadcast add, softmax, rope and silu_mul", "[hpu][device]") {
  auto dev = make_cpu_reference_device();
  Graph g("ops");
  const int x = g.add_tensor("x", {2, 3, 4}, DType::f32, TensorKind::input);
  const int m = g.add_tensor("m", {1, 3, 1}, DType::f32, TensorKind::input);
  const int cs = g.add_tensor("cos", {3, 1}, DType::f32, TensorKind::input);
  const int sn = g.add_tensor("sin", {3, 1}, DType::f32, TensorKind::input);
  const int t = g.add_tensor("t", {4, 2, 3}, DType::f32, TensorKind::output);
  const int a = g.add_tensor("a", {2, 3, 4}, DType::f32, TensorKind::output);
  const int sm = g.add_tensor("sm", {2, 3, 4}, DType::f32, TensorKind::output);
  const int r = g.add_tensor("r", {2, 3, 4}, DType::f32, TensorKind::output);
  const int sl = g.add_tensor("sl", {2, 3, 4}, DType::f32, TensorKind::output);
  g.add_node(Op::transpose, "t", {x}, {t}, {.perm = {2, 0, 1}});
  g.add_node(Op::add, "a", {x, m}, {a});
  g.add_node(Op::softmax, "sm", {x}, {sm});
  g.add_node(Op::rope, "r", {x, cs, sn}, {r}, {.head_dim = 2});
  g.add_node(Op::silu_mul, "sl", {x, x}, {sl});
  const auto rec = dev->compile(g);
  const auto xv = iota(24, -12);
  auto bx = upload(dev, xv), bm = upload(dev, std::vector<float>{10, 20, 30});
  auto bc = upload(dev, std::vector<float>{1, 0, 0.5f}),
       bs = upload(dev, std::vector<float>{0, 1, 0.5f});
  DeviceBuffer bt(dev, 96), ba(dev, 96), bsm(dev, 96), br(dev, 96), bsl(dev, 96);
  dev->launch(*rec,
              std::vector<Binding>{{"x", bx.address()},
                                   {"m", bm.address()},
                                   {"cos", bc.address()},
                                   {"sin", bs.address()},
                                   {"t", bt.address()},
                                   {"a", ba.address()},
                                   {"sm", bsm.address()},
                                   {"r", br.address()},
                                   {"sl", bsl.address()}},
              0);
  const auto tv = download(bt), av = download(ba), smv = download(bsm), rv = download(br),
             slv = download(bsl);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) {
        const float v = xv[(i * 3 + j) * 4 + k];
        CHECK(tv[(k * 2 + i) * 3 + j] == v);
        CHECK(av[(i * 3 + j) * 4 + k] == v + 10.0f * static_cast<float>(j + 1));
        CHECK(slv[(i * 3 + j) * 4 + k] == Approx(v / (1 + std::exp(-v)) * v).margin(1e-5));
      }
  for (std::size_t row = 0; row < 6; ++row) {
    float s = 0;
    for (std::size_t k = 0; k < 4; ++k) s += smv[row * 4 + k];
    CHECK(s == Approx(1.0f));
    CHECK(smv[row * 4 + 3] > smv[row * 4 + 0]);
  }
  // rope with head_dim 2 rotates pairs (x0, x1) of each head by the row's angle.
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t h = 0; h < 2; ++h) {
        const std::size_t o = (i * 3 + j) * 4 + h * 2;
        const float c = std::vector<float>{1, 0, 0.5f}[j], s = std::vector<float>{0, 1, 0.5f}[j];
        CHECK(rv[o] == Approx(xv[o] * c - xv[o + 1] * s));
        CHECK(rv[o + 1] == Approx(xv[o + 1] * c + xv[o] * s));
      }
}

TEST_CASE("graph validation and launch bindings fail loudly", "[hpu][device]") {
  auto dev = make_cpu_reference_device();
  Graph g("mm");
  const int a = g.add_tensor("a", {2, 4}, DType::f32, TensorKind::input);
  const int w = g.add_tensor("w", {3, 5}, DType::f32, TensorKind::weight);
  const int y = g.add_tensor("y", {2, 3}, DType::f32, TensorKind::output);
  g.add_node(Op::gemm, "mm", {a, w}, {y}, {.transpose_b = true});
  CHECK_THROWS_WITH(dev->compile(g),
                    Catch::Contains("node 'mm'") && Catch::Contains("inner dimensions"));
  CHECK_THROWS_AS(g.add_tensor("a", {1}, DType::f32, TensorKind::input), InvalidArgument);
  CHECK_THROWS_AS(g.add_tensor("z", {0, 2}, DType::f32, TensorKind::input), InvalidArgument);

  Graph ok("mm");
  const int a2 = ok.add_tensor("a", {2, 4}, DType::f32, TensorKind::input);
  const int w2 = ok.add_tensor("w", {3, 4}, DType::f32, TensorKind::weight);
  const int t2 = ok.add_tensor("tmp", {2, 3}, DType::f32, TensorKind::intermediate);
  const int y2 = ok.add_tensor("y", {2, 3}, DType::f32, TensorKind::output);
  ok.add_node(Op::gemm, "mm", {a2, w2}, {t2}, {.transpose_b = true});
  ok.add_node(Op::softmax, "sm", {t2}, {y2});
  const auto rec = dev->compile(ok);
  CHECK(rec->workspace_bytes() >= 24);
  auto ba = upload(dev, iota(8)), bw = upload(dev, iota(12));
  DeviceBuffer by(dev, 24), ws(dev, rec->workspace_bytes()), small(dev, 8);
  const std::vector<Binding> missing = {{"a", ba.address()}, {"w", bw.address()}};
  CHECK_THROWS_WITH(dev->launch(*rec, missing, ws.address()), Catch::Contains("binding for 'y'"));
  const std::vector<Binding> overrun = {
      {"a", ba.address()}, {"w", bw.address()}, {"y", small.address()}};
  CHECK_THROWS_WITH(dev->launch(*rec, overrun, ws.address()),
                    Catch::Contains("not inside one allocation"));
  const std::vector<Binding> extra = {
      {"a", ba.address()}, {"w", bw.address()}, {"y", by.address()}, {"tmp", by.address()}};
  CHECK_THROWS_WITH(dev->launch(*rec, extra, ws.address()), Catch::Contains("'tmp'"));
  const std::vector<Binding> good = {{"a", ba.address()}, {"w", bw.address()}, {"y", by.address()}};
  dev->launch(*rec, good, ws.address());
  const auto yv = download(by);
  // Row 0 of a . w^T is [14, 38, 62]: softmax puts almost all mass on the last.
  CHECK(yv[2] == Approx(1.0f).margin(1e-6));
  CHECK_THROWS_AS(small.upload(yv.data(), 12), InvalidArgument);
}

TEST_CASE("static KV cache: preallocated layout, O(1) truncate, write index and masks",
          "[hpu][kv_cache]") {
  auto dev = make_cpu_reference_device();
  const KvLayout L{.layers = 2, .batch = 1, .kv_heads = 2, .max_len = 8, .head_dim = 4};
  CHECK(L.slots() == 9);
  StaticKvCache c(dev, L, 6);
  CHECK(c.bytes() == 2 * 2 * 2 * 9 * 4 * sizeof(float));
  CHECK(c.value_address(1) - c.value_address(0) == L.layer_bytes());
  CHECK(c.size() == 0);
  c.commit(4);
  CHECK_THROWS_AS(c.commit(3), CapacityError);
  CHECK(c.size() == 4);
  c.truncate(2);
  CHECK(c.size() == 2);
  CHECK_THROWS_AS(c.truncate(3), InvalidArgument);
  CHECK_THROWS_AS(StaticKvCache(dev, L, 9), CapacityError);
  CHECK_THROWS_AS(StaticKvCache(dev, L, 0), InvalidArgument);

  CHECK(StaticKvCache::write_index(5, 2, 4, 8) == std::vector<std::int32_t>{5, 6, 8, 8});

  constexpr float X = -std::numeric_limits<float>::infinity();
  // pos0 = 2, 2 real tokens in a bucket of 3, kv bucket 5.
  CHECK(StaticKvCache::attention_mask(2, 2, 1, 1, 3, 5) == std::vector<float>{0, 0, 0, X, X,  //
                                                                              0, 0, 0, 0, X,  //
                                                                              0, X, X, X, X});
  // The same with a sliding window of 2: a query at position p sees p-1, p.
  CHECK(StaticKvCache::attention_mask(2, 2, 1, 1, 3, 5, 2) == std::vector<float>{X, 0, 0, X, X,  //
                                                                                 X, X, 0, 0, X,  //
                                                                                 0, X, X, X, X});
}

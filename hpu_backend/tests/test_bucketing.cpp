// Bucket generation (vllm-hpu-extension's warm-up ranges), the picking rule,
// the padding report and the rule beyond the largest bucket.
#include <catch2/catch.hpp>

#include "assistgen/hpu/bucketing.hpp"

using namespace assistgen;
using namespace assistgen::hpu;
using V = std::vector<std::size_t>;

TEST_CASE("warm-up ranges double from min below step, then add step up to max",
          "[hpu][bucketing]") {
  CHECK(warmup_range({1, 32, 64}) == V{1, 2, 4, 8, 16, 32, 64});
  CHECK(warmup_range({128, 128, 1024}) == V{128, 256, 384, 512, 640, 768, 896, 1024});
  CHECK(warmup_range({2, 8, 20}) == V{2, 4, 8, 16});  // 20 is not a multiple of step: not a bucket
  CHECK(warmup_range({3, 4, 16}) == V{3, 4, 8, 12, 16});
  CHECK(warmup_range({1, 1, 1}) == V{1});
  CHECK(warmup_range({16, 4, 16}) == V{16});  // min above step: only multiples of step >= min
  CHECK(warmup_range({5, 4, 6}) == V{6});     // nothing in the ladder: the max itself
  CHECK_THROWS_AS(warmup_range({0, 4, 8}), ConfigError);
  CHECK_THROWS_AS(warmup_range({8, 4, 4}), ConfigError);
  CHECK_THROWS_AS(warmup_range({1, 0, 4}), ConfigError);
}

TEST_CASE("pick takes the smallest bucket that fits and reports the padding", "[hpu][bucketing]") {
  const Bucketing b(
      BucketConfig{.batch = {1, 2, 4}, .tokens = {1, 8, 16}, .kv_len = {32, 32, 128}});
  CHECK(b.batch_buckets() == V{1, 2, 4});
  CHECK(b.token_buckets() == V{1, 2, 4, 8, 16});
  CHECK(b.kv_buckets() == V{32, 64, 96, 128});

  const auto c = b.pick(1, 3, 40);
  CHECK(c.bucket == Bucket{1, 4, 64});
  CHECK(c.padded_tokens == 1);
  CHECK(c.padded_attention == 4 * 64 - 3 * 40);
  CHECK(c.token_waste == Approx(0.25));

  const auto exact = b.pick(2, 8, 96);
  CHECK(exact.bucket == Bucket{2, 8, 96});
  CHECK(exact.padded_tokens == 0);
  CHECK(exact.token_waste == 0.0);

  CHECK(b.pick(3, 1, 1).bucket == Bucket{4, 1, 32});
  CHECK(b.pick(3, 1, 1).padded_tokens == 1);
}

TEST_CASE("beyond the largest bucket is a CapacityError naming the dimension", "[hpu][bucketing]") {
  const Bucketing b(BucketConfig{.batch = {1, 1, 1}, .tokens = {1, 4, 8}, .kv_len = {16, 16, 32}});
  CHECK_THROWS_WITH(b.pick(1, 9, 16),
                    Catch::Contains("tokens 9 exceeds the largest tokens bucket 8"));
  CHECK_THROWS_WITH(b.pick(1, 1, 33),
                    Catch::Contains("kv_len 33 exceeds the largest kv_len bucket 32"));
  CHECK_THROWS_AS(b.pick(2, 1, 1), CapacityError);
  CHECK_THROWS_AS(b.pick(1, 0, 1), InvalidArgument);
}

TEST_CASE("the warm-up list is every combination, batch slowest and kv fastest",
          "[hpu][bucketing]") {
  const Bucketing b(BucketConfig{.batch = {1, 2, 2}, .tokens = {1, 2, 2}, .kv_len = {16, 16, 32}});
  const std::vector<Bucket> want = {{1, 1, 16}, {1, 1, 32}, {1, 2, 16}, {1, 2, 32},
                                    {2, 1, 16}, {2, 1, 32}, {2, 2, 16}, {2, 2, 32}};
  CHECK(b.all() == want);
  // Every request within range picks a bucket of the warm-up list.
  const auto all = b.all();
  for (std::size_t bs = 1; bs <= 2; ++bs)
    for (std::size_t t = 1; t <= 2; ++t)
      for (std::size_t l = 1; l <= 32; ++l)
        CHECK(std::find(all.begin(), all.end(), b.pick(bs, t, l).bucket) != all.end());
}

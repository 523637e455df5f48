// Tensor parallel without MPI (tensor_parallel.hpp; the bit-identity tests
// run under mpirun: tests/mpi): how work is shared out, and the load-time
// checks that need no other rank to answer: a model with fewer heads than
// ranks, and ranks that loaded different models (answered by a fake group).
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <string>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/tensor_parallel.hpp"

using namespace assistgen;

namespace {

const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";

// Rank 0 of a group whose other ranks answer every gather with `others`
// (bytes repeated) and every broadcast with nothing.
class FakeGroup : public RankGroup {
 public:
  FakeGroup(std::size_t size, unsigned char others) : size_(size), others_(others) {}
  std::size_t rank() const override { return 0; }
  std::size_t size() const override { return size_; }
  void all_gather(const void* mine, std::span<const std::size_t> counts, void* all) override {
    auto* out = static_cast<unsigned char*>(all);
    std::memcpy(out, mine, counts[0]);
    std::size_t off = counts[0];
    for (std::size_t r = 1; r < counts.size(); off += counts[r++])
      std::memset(out + off, others_, counts[r]);
  }
  void broadcast(void*, std::size_t, std::size_t) override {}

 private:
  std::size_t size_;
  unsigned char others_;
};

}  // namespace

TEST_CASE("share_of splits a range into contiguous shares that cover it") {
  for (std::size_t total : {1u, 7u, 64u, 5632u, 32000u})
    for (std::size_t ranks = 1; ranks <= std::min<std::size_t>(total, 8); ++ranks) {
      std::size_t next = 0;
      for (std::size_t r = 0; r < ranks; ++r) {
        const Share s = share_of(total, r, ranks);
        REQUIRE(s.begin == next);
        REQUIRE(s.size() >= total / ranks);
        REQUIRE(s.size() <= total / ranks + 1);
        next = s.end;
      }
      REQUIRE(next == total);
    }
}

TEST_CASE("tensor parallel: more ranks than attention heads is a ConfigError naming both") {
  cpu::LoadOptions o;
  o.tensor_parallel = std::make_shared<FakeGroup>(9, 0);  // llama-gqa has 8 heads
  REQUIRE_THROWS_WITH(cpu::Transformer::load(kModels / "llama-gqa", o),
                      Catch::Contains("9 ranks") && Catch::Contains("8 attention heads"));
}

TEST_CASE("tensor parallel: ranks that loaded another model are a ConfigError naming the rank") {
  cpu::LoadOptions o;
  o.tensor_parallel = std::make_shared<FakeGroup>(2, 0xab);  // rank 1's fingerprint differs
  REQUIRE_THROWS_WITH(cpu::Transformer::load(kModels / "llama-gqa", o),
                      Catch::Contains("rank 1 loaded another model than rank 0"));
  REQUIRE_THROWS_AS(
      cpu::Transformer::random(cpu::Transformer::load(kModels / "llama-gqa").config(), 1, o),
      ConfigError);
}

TEST_CASE("tensor parallel: a group of one rank is the whole model") {
  cpu::LoadOptions o;
  o.tensor_parallel = std::make_shared<FakeGroup>(1, 0);
  const auto whole = cpu::Transformer::load(kModels / "llama-gqa");
  const auto one = cpu::Transformer::load(kModels / "llama-gqa", o);
  REQUIRE(one.weight_bytes() == whole.weight_bytes());
  REQUIRE(one.make_cache(4).kv().kv_heads() == whole.make_cache(4).kv().kv_heads());
}

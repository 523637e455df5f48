// hpu::Transformer::forward(tokens, cache, out) allocates no host memory per
// step once warm: every global operator new of this program is counted
// (replaced below), and a decode loop with verification passes and
// rollbacks, after one warm-up of each bucket it uses, must count none
// outside the device. What the device does inside launch() and compile() is
// the device's work (on a Gaudi it runs there; the CPU reference device
// interprets the graph with host temporaries), so a pass-through device
// stops counting around those two calls.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <vector>

#include "../../tests/alloc_counter.hpp"  // replaces operator new: g_counting, g_allocations
#include "assistgen/hpu/transformer.hpp"

using namespace assistgen;
namespace fs = std::filesystem;

namespace {
// Forwards to the CPU reference device; counting pauses inside launch() and
// compile().
class NotCountingLaunches final : public hpu::Device {
 public:
  std::string name() const override { return inner_->name(); }
  hpu::DeviceAddress allocate(std::size_t bytes) override { return inner_->allocate(bytes); }
  void free(hpu::DeviceAddress a) noexcept override { inner_->free(a); }
  void copy_to_device(hpu::DeviceAddress dst, const void* src, std::size_t bytes) override {
    inner_->copy_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, hpu::DeviceAddress src, std::size_t bytes) override {
    inner_->copy_to_host(dst, src, bytes);
  }
  void synchronize() override { inner_->synchronize(); }
  std::shared_ptr<const hpu::Recipe> compile(const hpu::Graph& g) override {
    const bool was = g_counting.exchange(false);
    auto r = inner_->compile(g);
    g_counting = was;
    return r;
  }
  void launch(const hpu::Recipe& r, std::span<const hpu::Binding> b,
              hpu::DeviceAddress ws) override {
    const bool was = g_counting.exchange(false);
    inner_->launch(r, b, ws);
    g_counting = was;
    ++launches;
  }
  std::size_t launches = 0;

 private:
  std::shared_ptr<hpu::Device> inner_ = hpu::make_cpu_reference_device();
};
}  // namespace

TEST_CASE("a warm decode loop into a kept Logits allocates no host memory", "[hpu][alloc]") {
  hpu::LoadOptions o;
  o.buckets.tokens = {1, 4, 8};  // 1, 2, 4, 8
  o.buckets.kv_len = {16, 16, 64};
  o.warmup = true;
  auto device = std::make_shared<NotCountingLaunches>();
  o.device = device;
  const auto model =
      hpu::Transformer::load(fs::path(ASSISTGEN_TEST_DATA_DIR) / "models" / "llama-gqa", o);
  std::vector<Token> tokens(60);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<Token>((i * 37 + 11) % 256);
  auto cache = model.make_cache(64);
  Logits out;
  // Warm-up: the largest buckets this loop can reach (5 rows, a verification
  // of four drafts, at the far end of the cache: the largest workspace and
  // staging buffers), then one row, then roll back.
  model.forward(std::span(tokens).first(55), cache, out);
  model.forward(std::span(tokens).subspan(55, 5), cache, out);
  cache.truncate(10);
  model.forward(std::span(tokens).subspan(10, 1), cache, out);
  cache.truncate(0);
  model.forward(std::span(tokens).first(1), cache, out);

  g_allocations = 0;
  const std::size_t launches_before = device->launches;
  g_counting = true;
  std::size_t pos = 1, launches = 0;
  for (std::size_t step = 0; step < 24 && pos + 5 <= tokens.size(); ++step, ++launches) {
    const std::size_t len = step % 3 == 0 ? 5 : 1;  // decode steps and verification passes
    model.forward(std::span(tokens).subspan(pos, len), cache, out);
    pos += len;
    if (len > 1) {  // two of the four drafts rejected
      pos -= 2;
      cache.truncate(pos);
    }
  }
  g_counting = false;
  CHECK(launches == 24);
  CHECK(device->launches - launches_before == 24);  // one launch per call: no chunking here
  CHECK(cache.size() == pos);
  CHECK(out.rows() == 1);
  CHECK(g_allocations == 0);
}

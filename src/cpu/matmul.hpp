// Private to the CPU backend: y[m, n] = x[m, k] * W^T (+ b) through oneDNN,
// with W stored as in an HF Linear ([n, k], row-major). Primitives are made
// once per (m, k, n, bias) and cached; the scratchpad is supplied by the
// caller so concurrent sequences share nothing mutable.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

namespace assistgen::cpu::detail {

/// Weights of one linear layer, f32, [n, k] row-major, optional bias [n].
struct LinearWeights {
  std::vector<float> w;
  std::vector<float> b;  // empty: no bias
  std::size_t n = 0, k = 0;
};

class MatmulEngine {
 public:
  MatmulEngine();

  /// Runs y = x W^T + b for m rows. `scratch` grows to what the primitive needs.
  void run(const LinearWeights& lw, const float* x, std::size_t m, float* y,
           std::vector<std::byte>& scratch, dnnl::stream& stream) const;

  dnnl::engine& engine() { return engine_; }
  dnnl::stream make_stream() const { return dnnl::stream(engine_); }

 private:
  struct Entry {
    dnnl::matmul prim;
    dnnl::memory::desc src, wei, bias, dst;
    std::size_t scratch_bytes = 0;
  };
  const Entry& get(std::size_t m, std::size_t k, std::size_t n, bool bias) const;

  mutable dnnl::engine engine_;
  mutable std::mutex mu_;
  mutable std::map<std::tuple<std::size_t, std::size_t, std::size_t, bool>, std::unique_ptr<Entry>>
      cache_;
};

}  // namespace assistgen::cpu::detail

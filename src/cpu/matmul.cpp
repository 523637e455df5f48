#include "matmul.hpp"

namespace assistgen::cpu::detail {

using dnnl::memory;
using dims = memory::dims;

MatmulEngine::MatmulEngine() : engine_(dnnl::engine::kind::cpu, 0) {}

const MatmulEngine::Entry& MatmulEngine::get(std::size_t m, std::size_t k, std::size_t n,
                                             bool bias) const {
  std::lock_guard lock(mu_);
  auto key = std::make_tuple(m, k, n, bias);
  if (auto it = cache_.find(key); it != cache_.end()) return *it->second;
  auto e = std::make_unique<Entry>();
  const auto M = static_cast<memory::dim>(m), K = static_cast<memory::dim>(k),
             N = static_cast<memory::dim>(n);
  e->src = memory::desc(dims{M, K}, memory::data_type::f32, memory::format_tag::ab);
  // HF stores Linear weights [n, k]: as a [k, n] matrix that is layout "ba".
  e->wei = memory::desc(dims{K, N}, memory::data_type::f32, memory::format_tag::ba);
  e->dst = memory::desc(dims{M, N}, memory::data_type::f32, memory::format_tag::ab);
  if (bias) e->bias = memory::desc(dims{1, N}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto pd = bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(e->src, e->wei, e->bias, e->dst),
                                                attr, engine_)
                 : dnnl::matmul::primitive_desc(dnnl::matmul::desc(e->src, e->wei, e->dst), attr,
                                                engine_);
  e->scratch_bytes = pd.scratchpad_desc().get_size();
  e->prim = dnnl::matmul(pd);
  return *cache_.emplace(key, std::move(e)).first->second;
}

void MatmulEngine::run(const LinearWeights& lw, const float* x, std::size_t m, float* y,
                       std::vector<std::byte>& scratch, dnnl::stream& stream) const {
  const Entry& e = get(m, lw.k, lw.n, !lw.b.empty());
  if (scratch.size() < e.scratch_bytes) scratch.resize(e.scratch_bytes);
  memory src(e.src, engine_, const_cast<float*>(x));
  memory wei(e.wei, engine_, const_cast<float*>(lw.w.data()));
  memory dst(e.dst, engine_, y);
  memory pad(dnnl::memory::desc(dims{static_cast<memory::dim>(e.scratch_bytes)},
                                memory::data_type::u8, memory::format_tag::a),
             engine_, scratch.data());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                       {DNNL_ARG_WEIGHTS, wei},
                                       {DNNL_ARG_DST, dst},
                                       {DNNL_ARG_SCRATCHPAD, pad}};
  if (!lw.b.empty())
    args.emplace(DNNL_ARG_BIAS, memory(e.bias, engine_, const_cast<float*>(lw.b.data())));
  e.prim.execute(stream, args);
  stream.wait();
}

}  // namespace assistgen::cpu::detail

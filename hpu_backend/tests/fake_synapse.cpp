// A fake libSynapse for the tests: a shared library exporting the Synapse C
// functions the SynapseDevice loads, with the signatures of our own
// declarations (src/synapse_api.hpp). It records every call as one text
// line, keeps "device memory" in host memory, checks the protocol the real
// runtime needs (host buffers mapped before a copy, tensor ids and sizes at
// launch matching the recipe), and computes the "gemm" and "batch_gemm"
// nodes of a launched recipe on the CPU (f32 or bf16 operands), the casts
// to bf16 (from f32 and E4M3) and mult / add with a vector broadcast along
// the fastest dimension (the fp8 scale and bias); other kernels are only
// recorded.
// It is test equipment, never linked into the library.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "synapse_api.hpp"

namespace syn = assistgen::hpu::syn;

struct assistgen::hpu::syn::SectionImpl {
  int id;
};
struct assistgen::hpu::syn::TensorImpl {
  std::string name;
  std::vector<syn::TSize> sizes;  // fastest-first
  std::uint32_t dtype = 0;
  syn::SectionImpl* section = nullptr;
};
struct assistgen::hpu::syn::GraphImpl {
  std::uint32_t type;
  struct NodeRec {
    std::string guid, name;
    std::vector<syn::TensorImpl*> ins, outs;
    std::vector<unsigned char> params;
  };
  std::vector<NodeRec> nodes;
};
struct assistgen::hpu::syn::RecipeImpl {
  struct T {
    std::string name;
    std::vector<syn::TSize> sizes;
    bool persistent = false;
    std::uint64_t ws_offset = 0;
    std::uint32_t dtype = 0;
  };
  struct N {
    std::string guid;
    std::vector<int> ins, outs;
    std::vector<unsigned char> params;
  };
  std::string name;
  std::vector<T> tensors;
  std::vector<N> nodes;
  std::uint64_t workspace = 0;
  std::map<std::string, std::uint64_t> ids;
};
struct assistgen::hpu::syn::StreamImpl {
  int id;
};

namespace {

std::mutex g_mu;
std::vector<std::string> g_log;
std::string g_fail;  // the name of a call that must fail
std::map<std::uint64_t, std::unique_ptr<unsigned char[]>> g_memory;
std::set<const void*> g_mapped;
int g_next_section = 0;

void log(std::string line) { g_log.push_back(std::move(line)); }
bool failing(const char* call) { return g_fail == call; }

std::string sizes_str(const std::vector<syn::TSize>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

std::uint64_t prod(const std::vector<syn::TSize>& s, std::size_t from) {
  std::uint64_t p = 1;
  for (std::size_t i = from; i < s.size(); ++i) p *= s[i];
  return p;
}

// c[M, N] = a[M, K] * b (b is [N, K] when tb, else [K, N]), optional bias[N].
void gemm(const float* a, const float* b, const float* bias, float* c, std::uint64_t M,
          std::uint64_t K, std::uint64_t N, bool tb) {
  for (std::uint64_t m = 0; m < M; ++m)
    for (std::uint64_t n = 0; n < N; ++n) {
      double s = bias ? bias[n] : 0.0;
      for (std::uint64_t k = 0; k < K; ++k)
        s += double(a[m * K + k]) * (tb ? b[n * K + k] : b[k * N + n]);
      c[m * N + n] = static_cast<float>(s);
    }
}

std::uint64_t elem_size(std::uint32_t dtype) {
  return dtype == syn::kTypeBf16 ? 2 : dtype == syn::kTypeFp8_143 ? 1 : 4;
}

// Independent decodings (not the library's): bf16 is the high half of an
// f32; E4M3 is sign, 4 exponent bits (bias 7), 3 mantissa bits.
float bf16_value(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
std::uint16_t bf16_round(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
float e4m3_value(std::uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const double v = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return static_cast<float>((c & 0x80) ? -v : v);
}

}  // namespace

extern "C" {

// ---- inspection, for the tests ----------------------------------------------
std::size_t fake_syn_log_size() {
  std::lock_guard l(g_mu);
  return g_log.size();
}
const char* fake_syn_log_line(std::size_t i) {
  std::lock_guard l(g_mu);
  return i < g_log.size() ? g_log[i].c_str() : "";
}
void fake_syn_reset() {
  std::lock_guard l(g_mu);
  g_log.clear();
  g_fail.clear();
}
void fake_syn_fail(const char* call) {
  std::lock_guard l(g_mu);
  g_fail = call ? call : "";
}

// ---- the runtime --------------------------------------------------------------
syn::Status synInitialize() {
  std::lock_guard l(g_mu);
  log("synInitialize");
  return failing("synInitialize") ? 1 : 0;
}
syn::Status synDestroy() {
  std::lock_guard l(g_mu);
  log("synDestroy");
  return 0;
}
syn::Status synDeviceAcquireByDeviceType(syn::DeviceId* id, syn::DeviceType type) {
  std::lock_guard l(g_mu);
  log("synDeviceAcquireByDeviceType type=" + std::to_string(type));
  if (failing("synDeviceAcquireByDeviceType")) return 26;
  *id = 7;
  return 0;
}
syn::Status synDeviceRelease(syn::DeviceId id) {
  std::lock_guard l(g_mu);
  log("synDeviceRelease device=" + std::to_string(id));
  return 0;
}
syn::Status synStreamCreateGeneric(syn::StreamHandle* s, syn::DeviceId id, std::uint32_t flags) {
  std::lock_guard l(g_mu);
  log("synStreamCreateGeneric device=" + std::to_string(id) + " flags=" + std::to_string(flags));
  *s = new syn::StreamImpl{1};
  return 0;
}
syn::Status synStreamDestroy(syn::StreamHandle s) {
  std::lock_guard l(g_mu);
  log("synStreamDestroy");
  delete s;
  return 0;
}
syn::Status synStreamSynchronize(syn::StreamHandle) {
  std::lock_guard l(g_mu);
  log("synStreamSynchronize");
  return 0;
}
syn::Status synDeviceMalloc(syn::DeviceId, std::uint64_t size, std::uint64_t, std::uint32_t,
                            std::uint64_t* out) {
  std::lock_guard l(g_mu);
  if (failing("synDeviceMalloc")) return 3;
  auto mem = std::make_unique<unsigned char[]>(size);
  *out = reinterpret_cast<std::uint64_t>(mem.get());
  g_memory[*out] = std::move(mem);
  log("synDeviceMalloc size=" + std::to_string(size) + " addr=" + std::to_string(*out));
  return 0;
}
syn::Status synDeviceFree(syn::DeviceId, std::uint64_t addr, std::uint32_t) {
  std::lock_guard l(g_mu);
  log("synDeviceFree addr=" + std::to_string(addr));
  return g_memory.erase(addr) ? 0 : 5;
}
syn::Status synHostMap(syn::DeviceId, std::uint64_t size, const void* p) {
  std::lock_guard l(g_mu);
  log("synHostMap size=" + std::to_string(size));
  g_mapped.insert(p);
  return 0;
}
syn::Status synHostUnmap(syn::DeviceId, const void* p) {
  std::lock_guard l(g_mu);
  log("synHostUnmap");
  return g_mapped.erase(p) ? 0 : 5;
}
syn::Status synMemCopyAsync(syn::StreamHandle, std::uint64_t src, std::uint64_t size,
                            std::uint64_t dst, std::uint32_t dir) {
  std::lock_guard l(g_mu);
  log("synMemCopyAsync dir=" + std::to_string(dir) + " size=" + std::to_string(size) +
      " src=" + std::to_string(src) + " dst=" + std::to_string(dst));
  const void* host = reinterpret_cast<const void*>(dir == syn::kHostToDram ? src : dst);
  if (!g_mapped.count(host)) return 9;  // the real runtime needs mapped host memory
  std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), size);
  return 0;
}
syn::Status synGraphCreate(syn::GraphHandle* g, syn::DeviceType type) {
  std::lock_guard l(g_mu);
  log("synGraphCreate type=" + std::to_string(type));
  *g = new syn::GraphImpl{type, {}};
  return 0;
}
syn::Status synGraphDestroy(syn::GraphHandle g) {
  std::lock_guard l(g_mu);
  log("synGraphDestroy");
  delete g;
  return 0;
}
syn::Status synSectionCreate(syn::SectionHandle* s, std::uint64_t, syn::GraphHandle) {
  std::lock_guard l(g_mu);
  *s = new syn::SectionImpl{g_next_section++};
  log("synSectionCreate id=" + std::to_string((*s)->id));
  return 0;
}
syn::Status synSectionDestroy(syn::SectionHandle s) {
  std::lock_guard l(g_mu);
  log("synSectionDestroy id=" + std::to_string(s->id));
  delete s;
  return 0;
}
syn::Status synTensorHandleCreate(syn::Tensor* t, syn::GraphHandle, std::uint32_t type,
                                  const char* name) {
  std::lock_guard l(g_mu);
  log("synTensorHandleCreate name=" + std::string(name) + " type=" + std::to_string(type));
  *t = new syn::TensorImpl{name, {}, 0, nullptr};
  return 0;
}
syn::Status synTensorAssignToSection(syn::Tensor t, syn::SectionHandle s, std::uint64_t offset) {
  std::lock_guard l(g_mu);
  log("synTensorAssignToSection name=" + t->name + " section=" + std::to_string(s->id) +
      " offset=" + std::to_string(offset));
  t->section = s;
  return 0;
}
syn::Status synTensorSetGeometry(syn::Tensor t, const syn::TensorGeometry* g, std::uint32_t type) {
  std::lock_guard l(g_mu);
  t->sizes.assign(g->sizes, g->sizes + g->dims);
  log("synTensorSetGeometry name=" + t->name + " sizes=" + sizes_str(t->sizes) +
      " type=" + std::to_string(type));
  return 0;
}
syn::Status synTensorSetDeviceDataType(syn::Tensor t, std::uint32_t dtype) {
  std::lock_guard l(g_mu);
  t->dtype = dtype;
  log("synTensorSetDeviceDataType name=" + t->name + " dtype=" + std::to_string(dtype));
  return 0;
}
syn::Status synTensorDestroy(syn::Tensor t) {
  std::lock_guard l(g_mu);
  delete t;
  return 0;
}
syn::Status synNodeCreate(syn::GraphHandle g, const syn::Tensor* ins, const syn::Tensor* outs,
                          std::uint32_t nin, std::uint32_t nout, const void* params,
                          std::uint32_t psize, const char* guid, const char* name, const char**,
                          const char**) {
  std::lock_guard l(g_mu);
  syn::GraphImpl::NodeRec n{guid, name, {ins, ins + nin}, {outs, outs + nout}, {}};
  if (params)
    n.params.assign(static_cast<const unsigned char*>(params),
                    static_cast<const unsigned char*>(params) + psize);
  std::string line = "synNodeCreate guid=" + n.guid + " name=" + n.name + " in=[";
  for (std::uint32_t i = 0; i < nin; ++i) line += (i ? "," : "") + ins[i]->name;
  line += "] out=[";
  for (std::uint32_t i = 0; i < nout; ++i) line += (i ? "," : "") + outs[i]->name;
  line += "]";
  if ((n.guid == "gemm" || n.guid == "batch_gemm") && psize == sizeof(syn::GemmParams)) {
    syn::GemmParams p;
    std::memcpy(&p, params, sizeof p);
    line += " transpose_a=" + std::to_string(p.transpose_a) +
            " transpose_b=" + std::to_string(p.transpose_b);
  } else if (n.guid == "transpose" && psize == sizeof(syn::TransposeParams)) {
    syn::TransposeParams p;
    std::memcpy(&p, params, sizeof p);
    line += " perm=[";
    for (std::uint32_t i = 0; i < p.tensorDim; ++i)
      line += (i ? "," : "") + std::to_string(p.permutation[i]);
    line += "]";
  } else if (n.guid == "slice" && psize == sizeof(syn::SliceParams)) {
    syn::SliceParams p;
    std::memcpy(&p, params, sizeof p);
    line += " ends=[";
    for (std::size_t i = 0; i < ins[0]->sizes.size(); ++i)
      line += (i ? "," : "") + std::to_string(p.ends[i]);
    line += "]";
  } else if (psize == sizeof(syn::AxisParams)) {
    syn::AxisParams p;
    std::memcpy(&p, params, sizeof p);
    line += " axis=" + std::to_string(p.axis);
  }
  log(line);
  g->nodes.push_back(std::move(n));
  return 0;
}
syn::Status synGraphCompile(syn::RecipeHandle* r, syn::GraphHandle g, const char* name,
                            const char*) {
  std::lock_guard l(g_mu);
  log("synGraphCompile name=" + std::string(name) + " nodes=" + std::to_string(g->nodes.size()));
  if (failing("synGraphCompile")) return 11;
  auto rec = std::make_unique<syn::RecipeImpl>();
  rec->name = name;
  std::map<syn::TensorImpl*, int> index;
  auto id_of = [&](syn::TensorImpl* t) {
    auto [it, fresh] = index.emplace(t, static_cast<int>(rec->tensors.size()));
    if (fresh) {
      syn::RecipeImpl::T c{t->name, t->sizes, t->section != nullptr, 0, t->dtype};
      if (!c.persistent) {
        c.ws_offset = rec->workspace;
        rec->workspace += (prod(t->sizes, 0) * elem_size(t->dtype) + 63) / 64 * 64;
      } else {
        rec->ids.emplace(t->name, 1000 + rec->ids.size());
      }
      rec->tensors.push_back(std::move(c));
    }
    return it->second;
  };
  for (const auto& n : g->nodes) {
    syn::RecipeImpl::N c{n.guid, {}, {}, n.params};
    for (auto* t : n.ins) c.ins.push_back(id_of(t));
    for (auto* t : n.outs) c.outs.push_back(id_of(t));
    rec->nodes.push_back(std::move(c));
  }
  *r = rec.release();
  return 0;
}
syn::Status synWorkspaceGetSize(std::uint64_t* size, syn::RecipeHandle r) {
  std::lock_guard l(g_mu);
  *size = r->workspace;
  log("synWorkspaceGetSize size=" + std::to_string(*size));
  return 0;
}
syn::Status synTensorRetrieveIds(syn::RecipeHandle r, const char** names, std::uint64_t* ids,
                                 std::uint32_t n) {
  std::lock_guard l(g_mu);
  log("synTensorRetrieveIds count=" + std::to_string(n));
  for (std::uint32_t i = 0; i < n; ++i) {
    auto it = r->ids.find(names[i]);
    if (it == r->ids.end()) return 13;
    ids[i] = it->second;
  }
  return 0;
}
syn::Status synLaunchExt(syn::StreamHandle, const syn::LaunchTensorInfoExt* info, std::uint32_t n,
                         std::uint64_t workspace, syn::RecipeHandle r, std::uint32_t) {
  std::lock_guard l(g_mu);
  log("synLaunchExt recipe=" + r->name + " tensors=" + std::to_string(n) +
      " workspace=" + std::to_string(workspace));
  std::map<std::string, std::uint64_t> addr;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::string name = info[i].tensorName;
    auto id = r->ids.find(name);
    if (id == r->ids.end() || id->second != info[i].tensorId)
      return 17;  // unknown tensor or wrong id
    std::vector<syn::TSize> sizes;
    for (const auto& t : r->tensors)
      if (t.name == name) sizes = t.sizes;
    for (std::size_t d = 0; d < sizes.size(); ++d)
      if (info[i].tensorSize[d] != sizes[d]) return 19;  // sizes disagree with the recipe
    addr[name] = info[i].pTensorAddress;
    log("bind name=" + name + " addr=" + std::to_string(info[i].pTensorAddress) +
        " sizes=" + sizes_str(sizes));
  }
  for (const auto& t : r->tensors)
    if (t.persistent && !addr.count(t.name)) return 23;  // a persistent tensor left unbound
  auto raw = [&](int id) {
    const auto& t = r->tensors[static_cast<std::size_t>(id)];
    return reinterpret_cast<unsigned char*>(t.persistent ? addr[t.name] : workspace + t.ws_offset);
  };
  auto ptr = [&](int id) { return reinterpret_cast<float*>(raw(id)); };
  auto tensor = [&](int id) -> const syn::RecipeImpl::T& {
    return r->tensors[static_cast<std::size_t>(id)];
  };
  // Operands of a gemm as f32: bf16 operands are widened into these.
  std::vector<std::vector<float>> widened;
  auto as_f32 = [&](int id) -> const float* {
    const auto& t = tensor(id);
    if (t.dtype != syn::kTypeBf16) return ptr(id);
    const auto* h = reinterpret_cast<const std::uint16_t*>(raw(id));
    widened.emplace_back(prod(t.sizes, 0));
    for (std::size_t i = 0; i < widened.back().size(); ++i) widened.back()[i] = bf16_value(h[i]);
    return widened.back().data();
  };
  for (const auto& nd : r->nodes) {
    // Elementwise kernels of the low-precision paths (casts, the fp8 scale
    // and bias): b broadcast along the fastest dimension or as a scalar.
    if (nd.guid == "cast_f32_to_bf16" || nd.guid == "cast_f8_to_bf16") {
      const auto n = prod(tensor(nd.ins[0]).sizes, 0);
      auto* out = reinterpret_cast<std::uint16_t*>(raw(nd.outs[0]));
      for (std::uint64_t i = 0; i < n; ++i)
        out[i] = nd.guid == "cast_f8_to_bf16" ? bf16_round(e4m3_value(raw(nd.ins[0])[i]))
                                              : bf16_round(ptr(nd.ins[0])[i]);
      log("computed " + nd.guid);
      continue;
    }
    if ((nd.guid == "mult_fwd_f32" || nd.guid == "add_fwd_f32") && nd.ins.size() == 2 &&
        tensor(nd.ins[1]).sizes.size() == 1 && tensor(nd.ins[0]).sizes.size() > 1) {
      const auto& a = tensor(nd.ins[0]).sizes;
      const auto nb = tensor(nd.ins[1]).sizes[0];
      if (nb != 1 && nb != a[0]) return 29;  // does not broadcast
      const float* x = ptr(nd.ins[0]);
      const float* y = ptr(nd.ins[1]);
      float* o = ptr(nd.outs[0]);
      for (std::uint64_t i = 0, n = prod(a, 0); i < n; ++i) {
        const float b = y[nb == 1 ? 0 : i % a[0]];
        o[i] = nd.guid == "mult_fwd_f32" ? x[i] * b : x[i] + b;
      }
      log("computed " + nd.guid);
      continue;
    }
    if (nd.guid != "gemm" && nd.guid != "batch_gemm") continue;
    syn::GemmParams p{};
    std::memcpy(&p, nd.params.data(), std::min(nd.params.size(), sizeof p));
    const auto& a = r->tensors[static_cast<std::size_t>(nd.ins[0])].sizes;
    const auto& b = r->tensors[static_cast<std::size_t>(nd.ins[1])].sizes;
    const std::uint64_t K = a[0];
    const std::uint64_t N = p.transpose_b ? b[1] : b[0];
    const float* bias = nd.ins.size() > 2 ? ptr(nd.ins[2]) : nullptr;
    if (nd.guid == "gemm") {
      gemm(as_f32(nd.ins[0]), as_f32(nd.ins[1]), bias, ptr(nd.outs[0]), prod(a, 1), K, N,
           p.transpose_b);
    } else {
      const std::uint64_t G = a[2], M = a[1];
      for (std::uint64_t g = 0; g < G; ++g)
        gemm(ptr(nd.ins[0]) + g * M * K, ptr(nd.ins[1]) + g * K * N, nullptr,
             ptr(nd.outs[0]) + g * M * N, M, K, N, p.transpose_b);
    }
    log("computed " + nd.guid);
  }
  return 0;
}
syn::Status synRecipeDestroy(syn::RecipeHandle r) {
  std::lock_guard l(g_mu);
  log("synRecipeDestroy name=" + r->name);
  delete r;
  return 0;
}

}  // extern "C"

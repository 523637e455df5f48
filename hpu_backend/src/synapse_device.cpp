// SynapseDevice: the Device interface on Habana's Synapse C API, loaded with
// dlopen so that building needs nothing from Habana. The IR lowers node by
// node: persistent tensors (inputs, weights, KV state, outputs) each get a
// section and are bound by name at launch; intermediates are left to the
// graph compiler's workspace. Shapes are reversed on the way in, because
// Synapse lists dimensions fastest-first, and so are axis numbers and
// permutations. Verified only against the fake libSynapse of the tests.
#include <dlfcn.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/hpu/device.hpp"
#include "synapse_api.hpp"

namespace assistgen::hpu {
namespace {

// The loaded library, the acquired device and its stream. Shared by the
// device and every recipe (a recipe must be destroyed before the runtime).
struct Runtime {
  void* lib = nullptr;
  syn::DeviceId device = 0;
  syn::DeviceType type = 0;
  syn::StreamHandle stream = nullptr;
  bool initialized = false, acquired = false;
  std::mutex mu;

#define ASSISTGEN_SYN_FN(name) syn::name##_t name = nullptr;
  ASSISTGEN_SYN_FN(synInitialize)
  ASSISTGEN_SYN_FN(synDestroy)
  ASSISTGEN_SYN_FN(synDeviceAcquireByDeviceType)
  ASSISTGEN_SYN_FN(synDeviceRelease)
  ASSISTGEN_SYN_FN(synStreamCreateGeneric)
  ASSISTGEN_SYN_FN(synStreamDestroy)
  ASSISTGEN_SYN_FN(synStreamSynchronize)
  ASSISTGEN_SYN_FN(synDeviceMalloc)
  ASSISTGEN_SYN_FN(synDeviceFree)
  ASSISTGEN_SYN_FN(synHostMap)
  ASSISTGEN_SYN_FN(synHostUnmap)
  ASSISTGEN_SYN_FN(synMemCopyAsync)
  ASSISTGEN_SYN_FN(synGraphCreate)
  ASSISTGEN_SYN_FN(synGraphDestroy)
  ASSISTGEN_SYN_FN(synSectionCreate)
  ASSISTGEN_SYN_FN(synSectionDestroy)
  ASSISTGEN_SYN_FN(synTensorHandleCreate)
  ASSISTGEN_SYN_FN(synTensorAssignToSection)
  ASSISTGEN_SYN_FN(synTensorSetGeometry)
  ASSISTGEN_SYN_FN(synTensorSetDeviceDataType)
  ASSISTGEN_SYN_FN(synTensorDestroy)
  ASSISTGEN_SYN_FN(synNodeCreate)
  ASSISTGEN_SYN_FN(synGraphCompile)
  ASSISTGEN_SYN_FN(synWorkspaceGetSize)
  ASSISTGEN_SYN_FN(synTensorRetrieveIds)
  ASSISTGEN_SYN_FN(synLaunchExt)
  ASSISTGEN_SYN_FN(synRecipeDestroy)
#undef ASSISTGEN_SYN_FN

  explicit Runtime(const SynapseOptions& o) : type(o.device_type) {
    lib = dlopen(o.library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = dlerror();
      throw Error("Gaudi runtime libSynapse.so not found: dlopen(\"" + o.library +
                  "\") failed: " + (why ? why : "unknown reason") +
                  ". Install Habana's SynapseAI software (it provides libSynapse.so), add its "
                  "directory to LD_LIBRARY_PATH, or set hpu::SynapseOptions::library");
    }
    try {
      load_symbols(o.library);
      check(synInitialize(), "synInitialize");
      initialized = true;
      check(synDeviceAcquireByDeviceType(&device, type), "synDeviceAcquireByDeviceType");
      acquired = true;
      check(synStreamCreateGeneric(&stream, device, 0), "synStreamCreateGeneric");
    } catch (...) {
      shutdown();
      throw;
    }
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  ~Runtime() { shutdown(); }

  void shutdown() noexcept {
    if (stream) synStreamDestroy(stream);
    if (acquired) synDeviceRelease(device);
    if (initialized) synDestroy();
    if (lib) dlclose(lib);
    stream = nullptr;
    acquired = initialized = false;
    lib = nullptr;
  }

  template <class F>
  void sym(F& f, const char* name, const std::string& path) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (!f)
      throw Error("Gaudi runtime '" + path + "' has no symbol " + name +
                  " (an unsupported SynapseAI version?)");
  }

  void load_symbols(const std::string& p) {
    sym(synInitialize, "synInitialize", p);
    sym(synDestroy, "synDestroy", p);
    sym(synDeviceAcquireByDeviceType, "synDeviceAcquireByDeviceType", p);
    sym(synDeviceRelease, "synDeviceRelease", p);
    sym(synStreamCreateGeneric, "synStreamCreateGeneric", p);
    sym(synStreamDestroy, "synStreamDestroy", p);
    sym(synStreamSynchronize, "synStreamSynchronize", p);
    sym(synDeviceMalloc, "synDeviceMalloc", p);
    sym(synDeviceFree, "synDeviceFree", p);
    sym(synHostMap, "synHostMap", p);
    sym(synHostUnmap, "synHostUnmap", p);
    sym(synMemCopyAsync, "synMemCopyAsync", p);
    sym(synGraphCreate, "synGraphCreate", p);
    sym(synGraphDestroy, "synGraphDestroy", p);
    sym(synSectionCreate, "synSectionCreate", p);
    sym(synSectionDestroy, "synSectionDestroy", p);
    sym(synTensorHandleCreate, "synTensorHandleCreate", p);
    sym(synTensorAssignToSection, "synTensorAssignToSection", p);
    sym(synTensorSetGeometry, "synTensorSetGeometry", p);
    sym(synTensorSetDeviceDataType, "synTensorSetDeviceDataType", p);
    sym(synTensorDestroy, "synTensorDestroy", p);
    sym(synNodeCreate, "synNodeCreate", p);
    sym(synGraphCompile, "synGraphCompile", p);
    sym(synWorkspaceGetSize, "synWorkspaceGetSize", p);
    sym(synTensorRetrieveIds, "synTensorRetrieveIds", p);
    sym(synLaunchExt, "synLaunchExt", p);
    sym(synRecipeDestroy, "synRecipeDestroy", p);
  }

  static void check(syn::Status s, const std::string& call) {
    if (s != syn::kSuccess)
      throw Error("Gaudi runtime: " + call + " failed with synStatus " + std::to_string(s));
  }
};

std::uint32_t syn_dtype(DType d, const std::string& tensor) {
  switch (d) {
    case DType::f32:
      return syn::kTypeSingle;
    case DType::bf16:
      return syn::kTypeBf16;
    case DType::i32:
      return syn::kTypeInt32;
    case DType::f8_e4m3:
      return syn::kTypeFp8_143;
    default:
      throw UnsupportedError("hpu synapse: tensor '" + tensor + "' has dtype " +
                             std::string(dtype_name(d)) + ", which the lowering does not map");
  }
}

// One persistent tensor of a recipe as launch info needs it.
struct LaunchSlot {
  std::string launch_name;  // the Synapse tensor's name
  int ir_tensor;            // whose binding gives the address
  syn::TSize sizes[syn::kDimMax] = {};
  std::uint64_t id = 0;
};

class SynapseRecipe final : public Recipe {
 public:
  SynapseRecipe(std::shared_ptr<Runtime> rt, Graph g) : rt_(std::move(rt)), graph_(std::move(g)) {}
  ~SynapseRecipe() override {
    if (!handle_) return;
    std::lock_guard lock(rt_->mu);
    rt_->synRecipeDestroy(handle_);
  }
  const Graph& graph() const override { return graph_; }
  std::size_t workspace_bytes() const override { return workspace_; }

  std::shared_ptr<Runtime> rt_;
  Graph graph_;
  syn::RecipeHandle handle_ = nullptr;
  std::size_t workspace_ = 0;
  std::vector<LaunchSlot> slots_;
};

// Synapse lists dimensions fastest-first: the reverse of the IR's order.
syn::TensorGeometry geometry(const TensorInfo& t) {
  if (t.shape.size() > syn::kDimMax)
    throw UnsupportedError("hpu synapse: tensor '" + t.name + "' has too many dimensions");
  syn::TensorGeometry g{};
  g.dims = static_cast<std::uint32_t>(t.shape.size());
  for (std::size_t i = 0; i < t.shape.size(); ++i)
    g.sizes[i] = static_cast<syn::TSize>(t.shape[t.shape.size() - 1 - i]);
  return g;
}

// Builds and compiles one graph; owns the temporary Synapse objects.
class Lowering {
 public:
  Lowering(Runtime& rt, const Graph& g) : rt_(rt), g_(g) {}
  ~Lowering() {
    for (auto t : tensors_) rt_.synTensorDestroy(t);
    for (auto s : sections_) rt_.synSectionDestroy(s);
    if (graph_) rt_.synGraphDestroy(graph_);
  }

  void run(SynapseRecipe& r) {
    Runtime::check(rt_.synGraphCreate(&graph_, rt_.type), "synGraphCreate");
    current_.assign(g_.tensors().size(), nullptr);
    section_of_.assign(g_.tensors().size(), nullptr);
    for (std::size_t i = 0; i < g_.tensors().size(); ++i) {
      const TensorInfo& t = g_.tensors()[i];
      if (t.kind == TensorKind::intermediate) continue;  // created when first written
      current_[i] = make_tensor(t, t.name, static_cast<int>(i), &r);
    }
    for (const Node& n : g_.nodes()) lower(n, r);
    const std::string name = g_.kind();
    Runtime::check(rt_.synGraphCompile(&r.handle_, graph_, name.c_str(), nullptr),
                   "synGraphCompile of '" + name + "'");
    std::uint64_t ws = 0;
    Runtime::check(rt_.synWorkspaceGetSize(&ws, r.handle_), "synWorkspaceGetSize");
    r.workspace_ = ws;
    std::vector<const char*> names;
    for (const auto& s : r.slots_) names.push_back(s.launch_name.c_str());
    std::vector<std::uint64_t> ids(names.size());
    Runtime::check(rt_.synTensorRetrieveIds(r.handle_, names.data(), ids.data(),
                                            static_cast<std::uint32_t>(names.size())),
                   "synTensorRetrieveIds");
    for (std::size_t i = 0; i < ids.size(); ++i) r.slots_[i].id = ids[i];
  }

 private:
  // A tensor with its geometry and type; persistent ones get a section (the
  // written version of a state tensor shares the section of the read one,
  // which is how the in-place KV write is expressed).
  syn::Tensor make_tensor(const TensorInfo& t, const std::string& name, int ir, SynapseRecipe* r) {
    syn::Tensor h = nullptr;
    Runtime::check(rt_.synTensorHandleCreate(&h, graph_, syn::kDataTensor, name.c_str()),
                   "synTensorHandleCreate('" + name + "')");
    tensors_.push_back(h);
    const auto geo = geometry(t);
    Runtime::check(rt_.synTensorSetGeometry(h, &geo, syn::kGeometrySizes),
                   "synTensorSetGeometry('" + name + "')");
    Runtime::check(rt_.synTensorSetDeviceDataType(h, syn_dtype(t.dtype, t.name)),
                   "synTensorSetDeviceDataType('" + name + "')");
    if (r) {
      auto& sec = section_of_[static_cast<std::size_t>(ir)];
      if (!sec) {
        Runtime::check(rt_.synSectionCreate(&sec, 0, graph_), "synSectionCreate('" + name + "')");
        sections_.push_back(sec);
      }
      Runtime::check(rt_.synTensorAssignToSection(h, sec, 0),
                     "synTensorAssignToSection('" + name + "')");
      LaunchSlot s;
      s.launch_name = name;
      s.ir_tensor = ir;
      for (std::size_t i = 0; i < geo.dims; ++i) s.sizes[i] = geo.sizes[i];
      r->slots_.push_back(std::move(s));
    }
    return h;
  }

  syn::Tensor output(int id, SynapseRecipe& r) {
    const TensorInfo& t = g_.tensor(id);
    const auto i = static_cast<std::size_t>(id);
    if (t.kind == TensorKind::state) {  // a new version of the state, same memory
      current_[i] = make_tensor(t, t.name + ".out", id, &r);
    } else if (t.kind == TensorKind::intermediate) {
      current_[i] = make_tensor(t, t.name, id, nullptr);
    }
    return current_[i];
  }

  syn::Tensor input(int id) const { return current_[static_cast<std::size_t>(id)]; }

  void node(const std::string& guid, const std::string& name, std::vector<syn::Tensor> ins,
            std::vector<syn::Tensor> outs, const void* params, std::size_t params_size) {
    Runtime::check(
        rt_.synNodeCreate(graph_, ins.data(), outs.data(), static_cast<std::uint32_t>(ins.size()),
                          static_cast<std::uint32_t>(outs.size()), params,
                          static_cast<std::uint32_t>(params_size), guid.c_str(), name.c_str(),
                          nullptr, nullptr),
        "synNodeCreate(" + guid + ", '" + name + "')");
  }

  void lower(const Node& n, SynapseRecipe& r) {
    std::vector<syn::Tensor> ins;
    for (int id : n.inputs) ins.push_back(input(id));
    const TensorInfo& in0 = g_.tensor(n.inputs[0]);
    const auto rank = static_cast<std::int32_t>(in0.shape.size());
    // Slice parameters that keep all of in0 (fastest-first axes), for the
    // slicing ops to narrow one axis of.
    auto whole_slice = [&] {
      syn::SliceParams p{};
      for (std::int32_t j = 0; j < rank; ++j) {
        p.axes[j] = static_cast<std::uint32_t>(j);
        p.starts[j] = 0;
        p.ends[j] = static_cast<std::uint32_t>(in0.shape[static_cast<std::size_t>(rank - 1 - j)]);
        p.steps[j] = 1;
      }
      return p;
    };
    switch (n.op) {
      case Op::gemm:
        if (g_.tensor(n.inputs[1]).dtype == DType::f8_e4m3) {
          lower_fp8_gemm(n, ins, r);
          break;
        }
        [[fallthrough]];
      case Op::batch_gemm: {
        // f32 x f32, or bf16 x bf16 with an f32 output (and f32 bias): the
        // MME takes the operand types from the tensors.
        syn::GemmParams p{false, n.attrs.transpose_b};
        node(n.op == Op::gemm ? "gemm" : "batch_gemm", n.name, ins, {output(n.outputs[0], r)}, &p,
             sizeof p);
        break;
      }
      case Op::embedding: {
        // gather rows of the table (input 1) by the ids (input 0) along the
        // table's slowest axis, which is axis 1 fastest-first.
        syn::AxisParams p{1};
        node("gather_fwd_f32", n.name, {ins[1], ins[0]}, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::rmsnorm: {
        syn::RmsNormParams p{n.attrs.eps};
        node("rms_norm_ex_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::rope:
        node("rotary_pos_embedding_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::transpose: {
        syn::TransposeParams p{};
        p.tensorDim = static_cast<std::uint32_t>(rank);
        // IR: out dim i = in dim perm[i], slowest-first. Fastest-first index
        // j is IR index rank-1-j on both sides.
        for (std::int32_t j = 0; j < rank; ++j)
          p.permutation[j] = static_cast<std::uint32_t>(
              rank - 1 - n.attrs.perm[static_cast<std::size_t>(rank - 1 - j)]);
        node("transpose", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::reshape:
        node("reshape", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::add:
        node("add_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::softmax: {
        syn::AxisParams p{0};  // the IR's last dimension is the fastest
        node("softmax_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::silu_mul: {
        // silu(gate) into a tensor of its own, then multiplied by up.
        const TensorInfo& t = g_.tensor(n.outputs[0]);
        TensorInfo tmp{n.name + ".silu", t.shape, t.dtype, TensorKind::intermediate};
        syn::Tensor s = make_tensor(tmp, tmp.name, -1, nullptr);
        node("silu_fwd_f32", n.name + ".silu", {ins[0]}, {s}, nullptr, 0);
        node("mult_fwd_f32", n.name, {s, ins[1]}, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      }
      case Op::kv_write: {
        // index_copy(self = cache, axis, index, source) -> cache (same section).
        syn::AxisParams p{1};  // IR dim 2 of a rank-4 tensor is fastest-first axis 1
        node("index_copy_fwd_f32", n.name, {ins[0], ins[1], ins[2]}, {output(n.outputs[0], r)}, &p,
             sizeof p);
        break;
      }
      case Op::kv_read: {
        syn::SliceParams p = whole_slice();
        p.ends[1] = static_cast<std::uint32_t>(n.attrs.length);  // the position axis
        node("slice", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::layernorm: {
        syn::LayerNormParams p{true, n.attrs.eps};
        node("layer_norm_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::gelu_tanh:
        node("gelu_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::cast_bf16:
        node("cast_f32_to_bf16", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::mul:
        node("mult_fwd_f32", n.name, ins, {output(n.outputs[0], r)}, nullptr, 0);
        break;
      case Op::batch_row: {
        // A slice of one row along the slowest axis (fastest-first: the last).
        syn::SliceParams p = whole_slice();
        p.starts[rank - 1] = static_cast<std::uint32_t>(n.attrs.length);
        p.ends[rank - 1] = static_cast<std::uint32_t>(n.attrs.length + 1);
        node("slice", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
      case Op::concat: {
        syn::AxisParams p{rank - 1};  // the IR's dim 0, fastest-first
        node("concat", n.name, ins, {output(n.outputs[0], r)}, &p, sizeof p);
        break;
      }
    }
  }

  // A bf16 x E4M3 gemm as the reference device defines it, from exact
  // pieces: the E4M3 codes widened to bf16 (every E4M3 value is a bf16
  // value), a bf16 x bf16 gemm with f32 accumulation, then times the scale
  // ([N] per channel or [1] per tensor, broadcast over the rows) and plus
  // the bias. The weights stay E4M3 in device memory; the widened copy lives
  // in the workspace.
  void lower_fp8_gemm(const Node& n, const std::vector<syn::Tensor>& ins, SynapseRecipe& r) {
    const TensorInfo& w = g_.tensor(n.inputs[1]);
    const TensorInfo& out = g_.tensor(n.outputs[0]);
    const bool bias = n.inputs.size() == 4;
    auto temp = [&](const std::string& name, std::vector<std::int64_t> shape, DType dt) {
      TensorInfo t{name, std::move(shape), dt, TensorKind::intermediate};
      return make_tensor(t, t.name, -1, nullptr);
    };
    syn::Tensor wb = temp(n.name + ".w_bf16", w.shape, DType::bf16);
    node("cast_f8_to_bf16", n.name + ".widen", {ins[1]}, {wb}, nullptr, 0);
    syn::Tensor acc = temp(n.name + ".acc", out.shape, DType::f32);
    syn::GemmParams p{false, n.attrs.transpose_b};
    node("gemm", n.name + ".gemm", {ins[0], wb}, {acc}, &p, sizeof p);
    if (!bias) {
      node("mult_fwd_f32", n.name, {acc, ins.back()}, {output(n.outputs[0], r)}, nullptr, 0);
      return;
    }
    syn::Tensor scaled = temp(n.name + ".scaled", out.shape, DType::f32);
    node("mult_fwd_f32", n.name + ".scale", {acc, ins.back()}, {scaled}, nullptr, 0);
    node("add_fwd_f32", n.name, {scaled, ins[2]}, {output(n.outputs[0], r)}, nullptr, 0);
  }

  Runtime& rt_;
  const Graph& g_;
  syn::GraphHandle graph_ = nullptr;
  std::vector<syn::Tensor> current_;  // latest Synapse tensor of each IR tensor
  std::vector<syn::SectionHandle> section_of_;
  std::vector<syn::Tensor> tensors_;
  std::vector<syn::SectionHandle> sections_;
};

class SynapseDevice final : public Device {
 public:
  explicit SynapseDevice(const SynapseOptions& o) : rt_(std::make_shared<Runtime>(o)) {}

  std::string name() const override { return "synapse"; }

  DeviceAddress allocate(std::size_t bytes) override {
    if (bytes == 0) throw InvalidArgument("hpu synapse: allocate(0)");
    std::lock_guard lock(rt_->mu);
    std::uint64_t addr = 0;
    if (rt_->synDeviceMalloc(rt_->device, bytes, 0, 0, &addr) != syn::kSuccess || addr == 0)
      throw CapacityError("hpu synapse: synDeviceMalloc of " + std::to_string(bytes) +
                          " bytes failed");
    return addr;
  }
  void free(DeviceAddress address) noexcept override {
    if (address == 0) return;
    std::lock_guard lock(rt_->mu);
    rt_->synDeviceFree(rt_->device, address, 0);
  }
  void copy_to_device(DeviceAddress dst, const void* src, std::size_t bytes) override {
    copy(reinterpret_cast<std::uint64_t>(src), dst, bytes, syn::kHostToDram, src);
  }
  void copy_to_host(void* dst, DeviceAddress src, std::size_t bytes) override {
    copy(src, reinterpret_cast<std::uint64_t>(dst), bytes, syn::kDramToHost, dst);
  }
  void synchronize() override {
    std::lock_guard lock(rt_->mu);
    Runtime::check(rt_->synStreamSynchronize(rt_->stream), "synStreamSynchronize");
  }

  std::shared_ptr<const Recipe> compile(const Graph& graph) override {
    graph.validate();
    auto r = std::make_shared<SynapseRecipe>(rt_, graph);
    std::lock_guard lock(rt_->mu);
    Lowering(*rt_, r->graph()).run(*r);
    return r;
  }

  void launch(const Recipe& recipe, std::span<const Binding> bindings,
              DeviceAddress workspace) override {
    const auto* r = dynamic_cast<const SynapseRecipe*>(&recipe);
    if (!r) throw InvalidArgument("hpu synapse: launch of a recipe compiled by another device");
    const Graph& g = r->graph();
    std::unordered_map<std::string, DeviceAddress> bound;
    for (const auto& b : bindings) bound[b.name] = b.address;
    for (const auto& b : bindings) {
      bool known = false;
      for (const auto& t : g.tensors())
        known |= t.name == b.name && t.kind != TensorKind::intermediate;
      if (!known)
        throw InvalidArgument("hpu synapse: binding '" + b.name + "' names no bound tensor of '" +
                              g.kind() + "'");
    }
    std::vector<syn::LaunchTensorInfoExt> info(r->slots_.size());
    for (std::size_t i = 0; i < r->slots_.size(); ++i) {
      const LaunchSlot& s = r->slots_[i];
      const std::string& ir_name = g.tensor(s.ir_tensor).name;
      auto it = bound.find(ir_name);
      if (it == bound.end())
        throw InvalidArgument("hpu synapse: launch of '" + g.kind() + "' without a binding for '" +
                              ir_name + "'");
      info[i].tensorName = s.launch_name.c_str();
      info[i].pTensorAddress = it->second;
      info[i].tensorType = syn::kDataTensor;
      std::memcpy(info[i].tensorSize, s.sizes, sizeof s.sizes);
      info[i].tensorId = s.id;
    }
    if (r->workspace_bytes() != 0 && workspace == 0)
      throw InvalidArgument("hpu synapse: '" + g.kind() + "' needs a workspace of " +
                            std::to_string(r->workspace_bytes()) + " bytes");
    std::lock_guard lock(rt_->mu);
    Runtime::check(
        rt_->synLaunchExt(rt_->stream, info.data(), static_cast<std::uint32_t>(info.size()),
                          workspace, r->handle_, 0),
        "synLaunchExt of '" + g.kind() + "'");
  }

 private:
  // Synchronous copies through a temporary host mapping: simple and correct;
  // a tuned version would keep pinned staging buffers (synHostMalloc).
  void copy(std::uint64_t src, std::uint64_t dst, std::size_t bytes, syn::DmaDir dir,
            const void* host) {
    if (bytes == 0) return;
    std::lock_guard lock(rt_->mu);
    Runtime::check(rt_->synHostMap(rt_->device, bytes, host), "synHostMap");
    const syn::Status s = rt_->synMemCopyAsync(rt_->stream, src, bytes, dst, dir);
    const syn::Status w = s == syn::kSuccess ? rt_->synStreamSynchronize(rt_->stream) : s;
    rt_->synHostUnmap(rt_->device, host);
    Runtime::check(s, "synMemCopyAsync");
    Runtime::check(w, "synStreamSynchronize");
  }

  std::shared_ptr<Runtime> rt_;
};

}  // namespace

std::shared_ptr<Device> make_synapse_device(const SynapseOptions& options) {
  return std::make_shared<SynapseDevice>(options);
}

}  // namespace assistgen::hpu

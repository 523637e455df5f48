// Graph construction and validation: the single place that knows each op's
// arity, dtypes and shape rules, so both devices can trust a validated graph.
#include "assistgen/hpu/graph.hpp"

#include <algorithm>
#include <numeric>

#include "assistgen/error.hpp"
#include "assistgen/hpu/device.hpp"

namespace assistgen::hpu {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::embedding:
      return "embedding";
    case Op::rmsnorm:
      return "rmsnorm";
    case Op::gemm:
      return "gemm";
    case Op::batch_gemm:
      return "batch_gemm";
    case Op::rope:
      return "rope";
    case Op::transpose:
      return "transpose";
    case Op::reshape:
      return "reshape";
    case Op::add:
      return "add";
    case Op::softmax:
      return "softmax";
    case Op::silu_mul:
      return "silu_mul";
    case Op::kv_write:
      return "kv_write";
    case Op::kv_read:
      return "kv_read";
    case Op::layernorm:
      return "layernorm";
    case Op::gelu_tanh:
      return "gelu_tanh";
    case Op::cast_bf16:
      return "cast_bf16";
    case Op::mul:
      return "mul";
    case Op::batch_row:
      return "batch_row";
    case Op::concat:
      return "concat";
  }
  return "?";
}

std::size_t TensorInfo::numel() const {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

int Graph::add_tensor(std::string name, std::vector<std::int64_t> shape, DType dtype,
                      TensorKind kind) {
  for (const auto& t : tensors_)
    if (t.name == name)
      throw InvalidArgument("hpu graph '" + kind_ + "': tensor '" + name + "' added twice");
  if (shape.empty() || shape.size() > 8 ||
      std::any_of(shape.begin(), shape.end(), [](auto d) { return d <= 0; }))
    throw InvalidArgument("hpu graph '" + kind_ + "': tensor '" + name + "' has shape " +
                          shape_str(shape) + " (rank 1 to 8, every dimension positive)");
  tensors_.push_back({std::move(name), std::move(shape), dtype, kind});
  return static_cast<int>(tensors_.size() - 1);
}

void Graph::add_node(Op op, std::string name, std::vector<int> inputs, std::vector<int> outputs,
                     NodeAttrs attrs) {
  nodes_.push_back({op, std::move(name), std::move(inputs), std::move(outputs), std::move(attrs)});
}

const TensorInfo& Graph::tensor(int id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tensors_.size())
    throw InvalidArgument("hpu graph '" + kind_ + "': no tensor with id " + std::to_string(id));
  return tensors_[static_cast<std::size_t>(id)];
}

int Graph::find(std::string_view name) const {
  for (std::size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name == name) return static_cast<int>(i);
  throw InvalidArgument("hpu graph '" + kind_ + "': no tensor named '" + std::string(name) + "'");
}

void Graph::validate() const {
  std::vector<bool> written(tensors_.size(), false);
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const auto k = tensors_[i].kind;
    written[i] = k == TensorKind::input || k == TensorKind::weight || k == TensorKind::state;
  }
  for (const Node& n : nodes_) {
    const std::string where =
        "hpu graph '" + kind_ + "', node '" + n.name + "' (" + std::string(op_name(n.op)) + ")";
    auto fail = [&](const std::string& what) { throw InvalidArgument(where + ": " + what); };
    for (int id : n.inputs) {
      const auto& t = tensor(id);
      if (!written[static_cast<std::size_t>(id)])
        fail("reads '" + t.name + "' before it is written");
    }
    for (int id : n.outputs) {
      const auto& t = tensor(id);
      if (t.kind == TensorKind::input || t.kind == TensorKind::weight)
        fail("writes the read-only tensor '" + t.name + "'");
      if (t.kind == TensorKind::state && n.op != Op::kv_write)
        fail("writes the state tensor '" + t.name + "' (only kv_write may)");
      if (t.kind != TensorKind::state && written[static_cast<std::size_t>(id)])
        fail("writes '" + t.name + "' a second time");
    }
    auto arity = [&](std::size_t lo, std::size_t hi, std::size_t outs) {
      if (n.inputs.size() < lo || n.inputs.size() > hi || n.outputs.size() != outs)
        fail("has " + std::to_string(n.inputs.size()) + " inputs and " +
             std::to_string(n.outputs.size()) + " outputs");
    };
    auto in = [&](std::size_t i) -> const TensorInfo& { return tensor(n.inputs[i]); };
    auto out = [&]() -> const TensorInfo& { return tensor(n.outputs[0]); };
    auto expect = [&](const TensorInfo& t, const std::vector<std::int64_t>& shape) {
      if (t.shape != shape)
        fail("tensor '" + t.name + "' has shape " + shape_str(t.shape) + ", expected " +
             shape_str(shape));
    };
    auto rank = [&](const TensorInfo& t, std::size_t r) {
      if (t.shape.size() != r)
        fail("tensor '" + t.name + "' has rank " + std::to_string(t.shape.size()) + ", expected " +
             std::to_string(r));
    };
    auto dtype = [&](const TensorInfo& t, DType d) {
      if (t.dtype != d)
        fail("tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) + ", expected " +
             std::string(dtype_name(d)));
    };
    switch (n.op) {
      case Op::embedding: {
        arity(2, 2, 1);
        rank(in(0), 2);
        rank(in(1), 2);
        dtype(in(0), DType::i32);
        dtype(in(1), DType::f32);
        expect(out(), {in(0).shape[0], in(0).shape[1], in(1).shape[1]});
        break;
      }
      case Op::rmsnorm: {
        arity(2, 2, 1);
        expect(in(1), {in(0).shape.back()});
        expect(out(), in(0).shape);
        if (!(n.attrs.eps > 0)) fail("eps must be positive");
        break;
      }
      case Op::gemm: {
        // Operand types (MME): f32 x f32, bf16 x bf16, or bf16 x f8_e4m3
        // with a scale as the last input.
        const bool fp8 = n.inputs.size() >= 2 && in(1).dtype == DType::f8_e4m3;
        if (fp8)
          arity(3, 4, 1);
        else
          arity(2, 3, 1);
        rank(in(1), 2);
        if (in(1).dtype != DType::f32 && in(1).dtype != DType::bf16 && !fp8)
          fail("tensor '" + in(1).name + "' is " + std::string(dtype_name(in(1).dtype)) +
               ", expected f32, bf16 or f8_e4m3");
        dtype(in(0), in(1).dtype == DType::f32 ? DType::f32 : DType::bf16);
        const auto k = in(0).shape.back();
        const auto N = n.attrs.transpose_b ? in(1).shape[0] : in(1).shape[1];
        const auto K = n.attrs.transpose_b ? in(1).shape[1] : in(1).shape[0];
        if (K != k)
          fail("inner dimensions of '" + in(0).name + "' and '" + in(1).name + "' differ");
        const std::size_t n_bias = n.inputs.size() - (fp8 ? 3 : 2);
        if (n_bias == 1) {
          expect(in(2), {N});
          dtype(in(2), DType::f32);
        }
        if (fp8) {
          const auto& sc = in(n.inputs.size() - 1);
          dtype(sc, DType::f32);
          if (sc.shape != std::vector<std::int64_t>{N} && sc.shape != std::vector<std::int64_t>{1})
            fail("scale '" + sc.name + "' has shape " + shape_str(sc.shape) + ", expected [" +
                 std::to_string(N) + "] (per channel) or [1] (per tensor)");
        }
        auto s = in(0).shape;
        s.back() = N;
        expect(out(), s);
        break;
      }
      case Op::batch_gemm: {
        arity(2, 2, 1);
        rank(in(0), 3);
        rank(in(1), 3);
        const auto& a = in(0).shape;
        const auto& b = in(1).shape;
        const auto N = n.attrs.transpose_b ? b[1] : b[2];
        const auto K = n.attrs.transpose_b ? b[2] : b[1];
        if (a[0] != b[0] || a[2] != K)
          fail("batch or inner dimensions of '" + in(0).name + "' " + shape_str(a) + " and '" +
               in(1).name + "' " + shape_str(b) + " differ");
        expect(out(), {a[0], a[1], N});
        break;
      }
      case Op::rope: {
        arity(3, 3, 1);
        rank(in(0), 3);
        const auto hd = n.attrs.head_dim;
        if (hd <= 0 || hd % 2 != 0 || in(0).shape[2] % hd != 0)
          fail("head_dim " + std::to_string(hd) + " must be even and divide the last dimension");
        if (in(1).shape.size() == 3) {  // per batch row
          expect(in(1), {in(0).shape[0], in(0).shape[1], hd / 2});
          expect(in(2), {in(0).shape[0], in(0).shape[1], hd / 2});
        } else {
          expect(in(1), {in(0).shape[1], hd / 2});
          expect(in(2), {in(0).shape[1], hd / 2});
        }
        expect(out(), in(0).shape);
        break;
      }
      case Op::transpose: {
        arity(1, 1, 1);
        const auto& p = n.attrs.perm;
        const auto& s = in(0).shape;
        std::vector<std::int64_t> sorted(p);
        std::sort(sorted.begin(), sorted.end());
        std::vector<std::int64_t> iota(s.size());
        std::iota(iota.begin(), iota.end(), 0);
        if (sorted != iota)
          fail("perm " + shape_str(p) + " is not a permutation of rank " +
               std::to_string(s.size()));
        std::vector<std::int64_t> o(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) o[i] = s[static_cast<std::size_t>(p[i])];
        expect(out(), o);
        break;
      }
      case Op::reshape: {
        arity(1, 1, 1);
        if (in(0).numel() != out().numel())
          fail("'" + in(0).name + "' " + shape_str(in(0).shape) + " cannot be reshaped to " +
               shape_str(out().shape));
        break;
      }
      case Op::add:
      case Op::mul: {
        arity(2, 2, 1);
        const auto& a = in(0).shape;
        const auto& b = in(1).shape;
        if (a.size() != b.size())
          fail("'" + in(1).name + "' must have the rank of '" + in(0).name + "'");
        for (std::size_t i = 0; i < a.size(); ++i)
          if (b[i] != a[i] && b[i] != 1)
            fail("'" + in(1).name + "' " + shape_str(b) + " does not broadcast to " + shape_str(a));
        expect(out(), a);
        break;
      }
      case Op::softmax: {
        arity(1, 1, 1);
        expect(out(), in(0).shape);
        break;
      }
      case Op::silu_mul: {
        arity(2, 2, 1);
        expect(in(1), in(0).shape);
        expect(out(), in(0).shape);
        break;
      }
      case Op::kv_write: {
        arity(3, 3, 1);
        if (n.outputs[0] != n.inputs[0]) fail("must write the cache tensor it reads (in place)");
        if (in(0).kind != TensorKind::state)
          fail("cache '" + in(0).name + "' must be a state tensor");
        rank(in(0), 4);
        rank(in(1), 1);
        dtype(in(1), DType::i32);
        const auto& c = in(0).shape;
        expect(in(2), {c[0], c[1], in(1).shape[0], c[3]});
        break;
      }
      case Op::kv_read: {
        arity(1, 1, 1);
        rank(in(0), 4);
        const auto& c = in(0).shape;
        if (n.attrs.length <= 0 || n.attrs.length > c[2])
          fail("length " + std::to_string(n.attrs.length) + " is outside (0, " +
               std::to_string(c[2]) + "]");
        expect(out(), {c[0], c[1], n.attrs.length, c[3]});
        break;
      }
      case Op::batch_row: {
        arity(1, 1, 1);
        if (n.attrs.length < 0 || n.attrs.length >= in(0).shape[0])
          fail("row " + std::to_string(n.attrs.length) + " is outside the " +
               std::to_string(in(0).shape[0]) + " rows of '" + in(0).name + "'");
        auto s1 = in(0).shape;
        s1[0] = 1;
        expect(out(), s1);
        dtype(out(), in(0).dtype);
        break;
      }
      case Op::concat: {
        if (n.inputs.empty() || n.outputs.size() != 1) fail("needs inputs and one output");
        auto s1 = in(0).shape;
        if (s1[0] != 1) fail("input '" + in(0).name + "' must have 1 row");
        for (std::size_t i = 1; i < n.inputs.size(); ++i) {
          expect(in(i), s1);
          dtype(in(i), in(0).dtype);
        }
        s1[0] = static_cast<std::int64_t>(n.inputs.size());
        expect(out(), s1);
        dtype(out(), in(0).dtype);
        break;
      }
      case Op::layernorm: {
        arity(3, 3, 1);
        expect(in(1), {in(0).shape.back()});
        expect(in(2), {in(0).shape.back()});
        expect(out(), in(0).shape);
        if (!(n.attrs.eps > 0)) fail("eps must be positive");
        break;
      }
      case Op::gelu_tanh: {
        arity(1, 1, 1);
        expect(out(), in(0).shape);
        break;
      }
      case Op::cast_bf16: {
        arity(1, 1, 1);
        dtype(in(0), DType::f32);
        dtype(out(), DType::bf16);
        expect(out(), in(0).shape);
        break;
      }
    }
    for (int id : n.outputs) {
      if (n.op != Op::embedding && n.op != Op::kv_write && n.op != Op::cast_bf16 &&
          n.op != Op::batch_row && n.op != Op::concat && tensor(id).dtype != DType::f32)
        fail("output '" + tensor(id).name + "' must be f32");
      written[static_cast<std::size_t>(id)] = true;
    }
  }
  for (std::size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].kind == TensorKind::output && !written[i])
      throw InvalidArgument("hpu graph '" + kind_ + "': output '" + tensors_[i].name +
                            "' is never written");
}

std::string to_string(const GraphKey& key) {
  return key.kind + "/" + std::string(dtype_name(key.dtype)) + "/b" + std::to_string(key.batch) +
         "/t" + std::to_string(key.tokens) + "/kv" + std::to_string(key.kv_len);
}

void DeviceBuffer::check(std::size_t bytes, std::size_t offset) const {
  if (!device_ || address_ == 0)
    throw InvalidArgument("hpu DeviceBuffer: copy with an empty buffer");
  if (offset > bytes_ || bytes > bytes_ - offset)
    throw InvalidArgument("hpu DeviceBuffer: copy of " + std::to_string(bytes) +
                          " bytes at offset " + std::to_string(offset) + " overruns a buffer of " +
                          std::to_string(bytes_) + " bytes");
}

}  // namespace assistgen::hpu

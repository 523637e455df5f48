// A small static-shape graph IR for the transformer forward pass. Gaudi (and
// any graph compiler) compiles one program per set of tensor shapes, so every
// tensor here has a fixed shape chosen when the graph is built; dynamic sizes
// (tokens appended, positions held) are padded up to buckets and masked
// instead. A Device compiles a Graph into a Recipe and launches it with
// bindings that give the device address of every non-intermediate tensor.
//
// Shapes are listed slowest-varying first (row-major, as in PyTorch). The
// Synapse lowering reverses them, because Synapse lists dimensions
// fastest-first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "assistgen/types.hpp"

namespace assistgen::hpu {

/// Operations of the IR. Each one's inputs, outputs and attributes are
/// described at its enumerator; validate() checks all of it.
enum class Op {
  /// in: ids [B, T] i32, table [V, H] -> out [B, T, H]: rows of the table.
  embedding,
  /// in: x [..., H], weight [H] -> out [..., H]; attr eps.
  rmsnorm,
  /// in: a [..., K], b [N, K] (transpose_b) or [K, N], optional bias [N]
  /// -> out [..., N] f32: a matrix product over the flattened leading dims.
  /// Operand types, as Gaudi's MME takes them: a and b f32; a and b bf16
  /// (products exact, f32 accumulation in k order); or a bf16 and b
  /// f8_e4m3 with a last input scale [N] or [1] f32 (out = scale * the f32
  /// accumulation, then + bias). Bias is f32.
  gemm,
  /// in: a [G, M, K], b [G, N, K] (transpose_b) or [G, K, N] -> out [G, M, N].
  batch_gemm,
  /// in: x [B, T, heads * head_dim], cos and sin [T, head_dim / 2] (shared by
  /// the batch) or [B, T, head_dim / 2] (per row) -> out like x: HF
  /// rotate-half RoPE per head; attr head_dim.
  rope,
  /// in: x -> out x permuted: out dim i is in dim perm[i]; attr perm.
  transpose,
  /// in: x -> out with the same element count and another shape.
  reshape,
  /// in: a, b -> out = a + b with numpy broadcasting of b (same rank, size-1
  /// dims broadcast); out has a's shape.
  add,
  /// in: x -> out: softmax over the last dimension.
  softmax,
  /// in: gate, up (same shape) -> out = silu(gate) * up.
  silu_mul,
  /// in: cache [B, Hkv, Lmax, D] (a state tensor), index [T] i32,
  /// src [B, Hkv, T, D] -> out: the same cache tensor, with
  /// cache[b, h, index[t], :] = src[b, h, t, :] (index_copy along dim 2).
  kv_write,
  /// in: cache [B, Hkv, Lmax, D] -> out [B, Hkv, L, D]: positions [0, L).
  kv_read,
  /// in: x [..., H], weight [H], bias [H] -> out [..., H]: LayerNorm with
  /// the biased variance (torch.nn.LayerNorm); attr eps.
  layernorm,
  /// in: x -> out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's gelu_new).
  gelu_tanh,
  /// in: x f32 -> out bf16 of x's shape, rounded to nearest even.
  cast_bf16,
  /// in: a, b -> out = a * b, broadcasting b as add does.
  mul,
  /// in: x [B, ...] -> out [1, ...]: batch row `length` (attr) of x.
  batch_row,
  /// in: k tensors [1, ...] of one shape -> out [k, ...]: stacked along dim 0.
  concat,
};

/// Lower-case name of an op ("batch_gemm", ...).
std::string_view op_name(Op op);

/// What a tensor is to the graph, which decides who provides its memory.
enum class TensorKind {
  input,         ///< bound by the caller at launch, read only
  weight,        ///< bound by the caller, read only, the same for every launch
  state,         ///< bound by the caller, read and written in place (KV cache)
  output,        ///< bound by the caller, written
  intermediate,  ///< lives in the recipe's workspace
};

/// One tensor of a graph.
struct TensorInfo {
  std::string name;                            ///< unique in the graph; bindings use it
  std::vector<std::int64_t> shape;             ///< slowest-varying first
  DType dtype = DType::f32;                    ///< element type
  TensorKind kind = TensorKind::intermediate;  ///< who provides the memory

  /// Element count.
  std::size_t numel() const;
  /// Size in bytes.
  std::size_t bytes() const { return numel() * dtype_size(dtype); }
};

/// Attributes; each op reads the ones its description names.
struct NodeAttrs {
  float eps = 0.0f;                     ///< rmsnorm, layernorm
  bool transpose_b = false;             ///< gemm, batch_gemm
  std::int64_t head_dim = 0;            ///< rope
  std::vector<std::int64_t> perm = {};  ///< transpose
  std::int64_t length = 0;              ///< kv_read: positions read; batch_row: the row
};

/// One operation: tensor ids of its inputs and outputs.
struct Node {
  Op op = Op::add;           ///< what it computes
  std::string name;          ///< unique name, for errors and device logs
  std::vector<int> inputs;   ///< tensor ids read
  std::vector<int> outputs;  ///< tensor ids written
  NodeAttrs attrs;           ///< op attributes
};

/// A static-shape graph: tensors and nodes in execution order.
class Graph {
 public:
  /// An empty graph; `kind` names it in keys and errors.
  explicit Graph(std::string kind = "graph") : kind_(std::move(kind)) {}

  /// Adds a tensor and returns its id. Throws InvalidArgument for a duplicate
  /// name, a rank outside 1..8 or a non-positive dimension.
  int add_tensor(std::string name, std::vector<std::int64_t> shape, DType dtype, TensorKind kind);
  /// Adds a node (validated by validate(), not here).
  void add_node(Op op, std::string name, std::vector<int> inputs, std::vector<int> outputs,
                NodeAttrs attrs = {});

  /// The graph's kind.
  const std::string& kind() const { return kind_; }
  /// Tensors, indexed by id.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// Nodes in execution order.
  const std::vector<Node>& nodes() const { return nodes_; }
  /// The tensor with id `id`; InvalidArgument when there is none.
  const TensorInfo& tensor(int id) const;
  /// Id of the tensor called `name`; throws InvalidArgument when absent.
  int find(std::string_view name) const;

  /// Checks every node: tensor ids, arity, dtypes, shapes and attributes;
  /// every intermediate and output written before it is read; outputs
  /// written once; state tensors written only by kv_write. Throws
  /// InvalidArgument naming the graph, the node and the tensor at fault.
  void validate() const;

 private:
  std::string kind_;
  std::vector<TensorInfo> tensors_;
  std::vector<Node> nodes_;
};

/// Key of a compiled graph: graph kind, element type and bucket dimensions.
struct GraphKey {
  std::string kind;          ///< architecture of the graph
  DType dtype = DType::f32;  ///< compute type
  std::size_t batch = 0;     ///< batch bucket
  std::size_t tokens = 0;    ///< token bucket
  std::size_t kv_len = 0;    ///< KV-length bucket

  friend bool operator==(const GraphKey&, const GraphKey&) = default;
  friend bool operator<(const GraphKey& a, const GraphKey& b) {
    return std::tie(a.kind, a.dtype, a.batch, a.tokens, a.kv_len) <
           std::tie(b.kind, b.dtype, b.batch, b.tokens, b.kv_len);
  }
};

/// "kind/f32/b1/t8/kv128", for logs and error messages.
std::string to_string(const GraphKey& key);

}  // namespace assistgen::hpu

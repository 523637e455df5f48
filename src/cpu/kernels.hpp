// Private to the CPU backend: the batch-invariant matmul kernels
// y[m, n] = x[m, k] * W^T (+ b) for f32, bf16 and int8 weights, and the
// fixed-order reductions the rest of the forward pass uses.
//
// Batch invariance is the point. Every output element y[i, j] is computed by
// one thread with the same sequence of operations whatever m is, whatever the
// row's place in the call and however many threads run:
//   f32, bf16_f32: acc = fma(x[i, kk], w[j, kk], acc) for kk = 0, 1, ..., k-1
//               (bf16_f32: bf16 weights widened to f32 exactly, activations
//               stay f32), then y = acc + b[j];
//   bf16:       activations rounded to bf16 per row, then per pair of k steps
//               acc += x[2p+1] w[2p+1]; acc += x[2p] w[2p] (products exact,
//               each sum rounded, denormals flushed: VDPBF16PS), y = acc + b[j];
//   int8:       activations quantized per row (symmetric, scale max|x| / 127,
//               shifted to u8 by +128), an exact int32 dot with the s8 weights,
//               the +128 removed with a per-column correction, then
//               y = fma(float(acc), sx * sw[j], b[j]);
//   grouped:    4- or 8-bit codes with a scale and a min per group of 16 or
//               32 k (GGUF's Q4_0 / Q4_K / Q6_K / Q8_0 as stored, or int4):
//               see kernels_q4.hpp.
// The AVX-512 kernels and the portable scalar fallback perform exactly these
// operations, so they agree bit for bit with each other too.
//
// On AMX CPUs (Isa::amx) bf16 and int8 run on tiles instead, for every m:
//   bf16:       per tile of 32 k (16 pairs), from zero, an even and an odd
//               chain e = e + x[2p] w[2p], o = o + x[2p+1] w[2p+1] over its
//               pairs in order, then acc = acc + (e + o), tiles in k order;
//               every sum rounded to nearest even, denormals flushed
//               (TDPBF16PS, as measured on a Xeon: matmul_amx.cpp), y = acc + b[j];
//   int8:       the same exact int32 dot (TDPBUSD) and epilogue as above, so
//               the same bits as the AVX-512 and scalar paths.
// Isa::scalar_amx performs those operations one element at a time.
//
// Weights are packed once at load into units of 32 output columns (two zmm
// of f32 results), each unit's k steps contiguous (128 bytes per step: per
// k for f32, per k pair for bf16, per k quad for int8). A register tile of up
// to 14 rows x 1 unit (28 accumulators) uses each weight vector for all its
// rows, so a call of up to 14 rows reads the DRAM weight stream once, and
// tiles of 3 or more rows prefetch that stream ahead of the arithmetic: that
// is what keeps verification of K + 1 tokens close to the cost of one. More
// rows take balanced passes, the later ones from L2. Tiles only group
// independent outputs, so their shape never changes an element's order of
// operations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <vector>

namespace assistgen::cpu::detail {

/// Storage type of packed weights (and, for bf16, of the activations).
enum class WeightType { f32, bf16, bf16_f32, i8, grouped };

/// Instruction sets the kernels can run on.
///   scalar:     the portable fallback, the same operations as avx512;
///   avx512:     AVX-512 F/BW/VL/VNNI/BF16 for every kernel;
///   amx:        bf16 and int8 matmuls on AMX tiles (matmul_amx.cpp), for every
///               row count; everything else as avx512. bf16 then has its own
///               order of operations (below); int8 gives the same bits;
///   scalar_amx: the portable fallback performing the amx path's operations,
///               the reference the AMX kernels are tested against.
enum class Isa { scalar, avx512, amx, scalar_amx };

/// The best Isa this CPU supports: amx needs AMX-TILE/BF16/INT8, AVX-512 and
/// the kernel's permission for the tile state (arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA), asked once; a refusal leaves avx512); avx512 needs
/// AVX512F/BW/VL/VNNI/BF16.
Isa detected_isa();
/// Whether `isa` can run here: scalar and scalar_amx always, avx512 with
/// AVX-512 (also on AMX CPUs), amx where detected.
bool isa_available(Isa isa);
/// The Isa in use: detected_isa() unless overridden, by set_isa() or by the
/// environment variable ASSISTGEN_KERNELS=scalar|avx512|amx|scalar_amx (a
/// value this CPU cannot run selects the best it can; another value is ignored).
Isa active_isa();
/// Forces an Isa (tests compare them); one this CPU cannot run selects the
/// best available below it (amx -> avx512 -> scalar). Not thread-safe against
/// concurrent forward passes.
void set_isa(Isa isa);
/// The name of an Isa ("scalar", "avx512", "amx", "scalar_amx").
const char* isa_name(Isa isa);

/// Allocation of AlignedBytes: 64-byte aligned; from 2 MiB on, aligned to
/// 2 MiB and advised to use transparent huge pages (MADV_HUGEPAGE), which
/// spares the weight stream a TLB miss every 4 KiB (docs/performance.md);
/// from 64 KiB to 2 MiB, carved from shared 32 MiB slabs advised the same
/// way (released when all their buffers are freed). Thread-safe. Throws
/// std::bad_alloc.
std::byte* allocate_bytes(std::size_t n);
void free_bytes(std::byte* p);
/// Shared slabs held now (tests: a freed slab is released).
std::size_t shared_slabs();

/// 64-byte aligned byte buffer (see allocate_bytes).
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(std::size_t n) : p_(n ? allocate_bytes(n) : nullptr), n_(n) {}
  std::byte* data() { return p_.get(); }
  const std::byte* data() const { return p_.get(); }
  std::size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { free_bytes(p); }
  };
  std::unique_ptr<std::byte, Free> p_;
  std::size_t n_ = 0;
};

/// Output columns per zmm of results, and per packed unit.
inline constexpr std::size_t kBlock = 16;
inline constexpr std::size_t kUnit = 32;

/// One linear layer in the kernels' layout.
struct PackedLinear {
  WeightType type = WeightType::f32;
  std::size_t n = 0, k = 0;  ///< logical shape of W ([n, k])
  std::size_t k_pad = 0;  ///< k rounded up to the type's k tile (AMX: 64 int8, 32 bf16; else 1)
  AlignedBytes data;         ///< the units
  std::vector<float> bias;   ///< [n] or empty
  std::vector<float> scale;  ///< int8: per output channel, [units * 32]
  std::vector<std::int32_t> offset;  ///< int8: 128 * sum_k q[j, k], [units * 32]
  unsigned bits = 0;                 ///< grouped: 4, 6 or 8 (kernels_q4.cpp: code_byte)
  std::size_t group = 0;             ///< grouped: k per scale (16 or 32)
  bool f16_scales = false;           ///< grouped: scales and mins stored as binary16 (exactly)
  std::size_t super = 0;             ///< grouped: groups per superblock of coded scales (0: none)
  /// grouped: > 0 when every min is the scale times this power of two
  /// (Q8_0: 128, Q5_0: 16, Q4_0: 8); then only the scales are stored
  float min_factor = 0.0f;
  AlignedBytes gscales;              ///< grouped: per unit and group, 32 scales then 32 mins

  std::size_t units() const { return (n + kUnit - 1) / kUnit; }
  /// Bytes a forward pass streams for this layer (weights, bias, scales).
  std::size_t bytes() const {
    return data.size() + gscales.size() + (bias.size() + scale.size()) * sizeof(float) +
           offset.size() * sizeof(std::int32_t);
  }
};

/// Packs W ([n, k] row-major f32) and an optional bias ([n] or null). bf16
/// rounds to nearest even; int8 quantizes each row symmetrically; grouped
/// quantizes to int4 in groups of 32 (io::quantize_int4).
PackedLinear pack_linear(WeightType type, const float* w, std::size_t n, std::size_t k,
                         const float* bias);

/// The weight W[j, kk] as the kernels use it (after rounding or quantization;
/// int8: q * scale). For tests and references.
float packed_weight(const PackedLinear& p, std::size_t j, std::size_t kk);

/// Per-call buffers of linear(), owned by the caller (the sequence's cache):
/// the activation panel (converted to the kernel's input type, k step major)
/// and the int8 row scales. Grown, never shrunk.
struct LinearScratch {
  std::vector<std::uint8_t>& q;
  std::vector<float>& q_scale;
};

/// Quantizes one activation row as linear() does for int8: returns the scale
/// and writes k_pad u8 values (q + 128; padding 128).
float quantize_row(const float* x, std::size_t k, std::size_t k_pad, std::uint8_t* out);

/// quantize_row's codes as q (int8, padding 0) instead of q + 128, and the
/// sum of each group of `group` codes (k_pad / group of them, exact) in
/// `sums`, as the grouped kernels take them. Returns the row's scale.
float quantize_groups(const float* x, std::size_t k, std::size_t k_pad, std::size_t group,
                      std::int8_t* out, float* sums);

/// Rounds one activation row to bf16 as linear() does (k_pad values, zero padded).
void bf16_row(const float* x, std::size_t k, std::size_t k_pad, std::uint16_t* out);

/// The activation panel of the register tiles from `m` converted rows:
/// panel[s * m + r] = rows[r * ld + s] for s < steps (4-byte words: a step's
/// k values of row r). Returns the panel: `rows` itself for one row, else
/// `xp`, filled (on AVX-512 from 4 rows on in 16 x 16 blocks held in
/// registers; the same words either way).
const std::uint32_t* panel_words(const std::uint32_t* rows, std::size_t ld, std::size_t m,
                                 std::size_t steps, std::uint32_t* xp);

/// Weight work (bytes of the weight stream, plus the rows' arithmetic) that
/// earns linear() another thread: 128 KiB. The demo draft's layers of 256
/// KiB and more get two threads (its output projection, 128 KiB, one).
/// Measured on kjv-draft-4m with 2 threads: a step took 0.34 ms at 256 KiB
/// (then only the fused gate/up projection split) where one thread per 1
/// MiB gave 0.42; at 128 KiB the README pair's draft time per target pass
/// went from 0.87 to 0.81 ms (chain K=7) and 0.81 to 0.75 ms (tree N=9),
/// tokens/s up 3% (three rounds, alternating); 64 KiB gained nothing more.
inline constexpr std::size_t kThreadWork = std::size_t{128} << 10;

/// y[m, n] = x[m, k] W^T + b. Uses up to `max_threads` threads, fewer when
/// the layer is small (each thread gets at least kThreadWork of weight
/// work), none beyond the caller's when one suffices.
void linear(const PackedLinear& p, const float* x, std::size_t m, float* y, LinearScratch& scratch,
            int max_threads);

/// sum_i a[i] * b[i] in a fixed order (16 lanes, then a fixed tree): the same
/// result for the same inputs wherever they sit in memory.
float dot(const float* a, const float* b, std::size_t n);
/// sum_i a[i] * a[i], in the same fixed order as dot().
float sum_squares(const float* a, std::size_t n);
/// sum_i a[i], in the same fixed order.
float sum(const float* a, std::size_t n);
/// e^x for attention's softmax and the SiLU activation: a reduction by ln 2
/// and Cephes' degree-6 polynomial, each step one IEEE multiplication or
/// addition (no fused ones), so the AVX-512 path gives the same bits.
/// Within 1 ulp of e^x over the floats; 0 below -103.97, infinity above
/// 88.72, NaN for NaN.
float kernel_exp(float x);
/// out[i] = gate[i] / (1 + kernel_exp(-gate[i])), times up[i] unless up is
/// null (the gated MLP's act(gate) * up); an element's value never depends
/// on n or its neighbours. out may be gate.
void silu(const float* gate, const float* up, std::size_t n, float* out);
/// Softmax attention of one query q[hd] over `len` keys and values (rows of
/// hd floats): s_j = q . k_j * scale (dot()'s order, each product added
/// by a fused multiply-add), p_j = e_j / sum(e) with e_j = kernel_exp(s_j -
/// max s), out = sum_j p_j v_j accumulated for j = 0, 1, ... from zero by
/// fused multiply-adds. `scores` holds len floats of scratch.
void attend(const float* q, const float* keys, const float* values, std::size_t len, std::size_t hd,
            float scale, float* scores, float* out);
/// attend() over the rows first, ..., first + count - 1 of `keys` / `values`
/// (rows of hd floats from row 0) followed by the rows `extra` (a tree node's
/// ancestors), in that order: the same operations in the same order as
/// attend() over those rows stored contiguously, so a token's attention is
/// the same bits in a tree as in a chain. `scores` holds count + extra.size()
/// floats of scratch.
void attend_rows(const float* q, const float* keys, const float* values, std::size_t first,
                 std::size_t count, std::span<const std::uint32_t> extra, std::size_t hd, float scale,
                 float* scores, float* out);

/// One query of attend_many(): attend_rows()'s arguments but the keys and
/// values, which the queries share.
struct AttendQuery {
  const float* q;
  std::size_t first, count;
  std::span<const std::uint32_t> extra;
  float* scores;  // count + extra.size() floats of scratch, its own
  float* out;     // hd floats
};
/// attend_rows() for queries over the same keys and values (the heads of a
/// KV group, the rows of a sequence): every out is attend_rows()'s bits;
/// the cache rows all of them see are read once per block for all of them,
/// not once per query.
void attend_many(std::span<const AttendQuery> queries, const float* keys, const float* values,
                 std::size_t hd, float scale);

}  // namespace assistgen::cpu::detail

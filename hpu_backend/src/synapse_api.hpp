// Private to the HPU backend (and its fake libSynapse in the tests): our own
// declarations of the part of Habana's Synapse C API the SynapseDevice uses,
// written from the public API documentation and function names, NOT copied
// from Habana's headers. They are verified only against the fake library in
// hpu_backend/tests; docs/hpu.md lists what must be checked on a Gaudi
// machine (enum values, struct layouts, TPC kernel names and their params).
#pragma once

#include <cstdint>

namespace assistgen::hpu::syn {

// Opaque handles are pointers to incomplete structs, as in the C API.
struct StreamImpl;
struct GraphImpl;
struct RecipeImpl;
struct TensorImpl;
struct SectionImpl;

using Status = std::int32_t;  // synStatus; 0 is synSuccess
using DeviceId = std::uint32_t;
using DeviceType = std::uint32_t;
using StreamHandle = StreamImpl*;
using GraphHandle = GraphImpl*;
using RecipeHandle = RecipeImpl*;
using Tensor = TensorImpl*;
using SectionHandle = SectionImpl*;
using TSize = std::uint64_t;

constexpr Status kSuccess = 0;
/// HABANA_DIM_MAX: entries of the size arrays in geometry and launch info.
constexpr unsigned kDimMax = 25;

/// synDmaDir values used here.
enum DmaDir : std::uint32_t { kHostToDram = 0, kDramToHost = 1 };
/// synTensorType: DATA_TENSOR.
constexpr std::uint32_t kDataTensor = 0;
/// synGeometryType: synGeometrySizes (= max sizes).
constexpr std::uint32_t kGeometrySizes = 1;
/// synDataType values used here.
/// syn_type_fp8_143 (E4M3) is a guess, like the rest, and must be checked.
enum DataType : std::uint32_t {
  kTypeBf16 = 1u << 1,
  kTypeSingle = 1u << 2,
  kTypeInt32 = 1u << 4,
  kTypeFp8_143 = 1u << 12,
};

/// synTensorGeometry: sizes fastest-varying first.
struct TensorGeometry {
  TSize sizes[kDimMax];
  std::uint32_t dims;
};

/// synLaunchTensorInfoExt: one bound tensor of a launch.
struct LaunchTensorInfoExt {
  const char* tensorName;
  std::uint64_t pTensorAddress;
  std::uint32_t tensorType;
  TSize tensorSize[kDimMax];
  std::uint64_t tensorId;
};

/// synGEMMParams (gemm and batch_gemm node params).
struct GemmParams {
  bool transpose_a;
  bool transpose_b;
};
/// synTransposeParams: permutation in fastest-first dimension numbers.
struct TransposeParams {
  std::uint32_t permutation[kDimMax];
  std::uint32_t tensorDim;
};
/// synSliceParams (kv_read): per fastest-first axis, [start, end) with step.
struct SliceParams {
  std::uint32_t axes[kDimMax];
  std::uint32_t starts[kDimMax];
  std::uint32_t ends[kDimMax];
  std::uint32_t steps[kDimMax];
};
/// Params of the TPC kernels whose layout we could only infer from the docs.
struct AxisParams {
  std::int32_t axis;  ///< softmax dim, gather axis, index_copy axis (fastest-first)
};
struct RmsNormParams {
  float epsilon;
};
/// layer_norm_fwd_f32 params (a guess in shape and content, like RmsNormParams).
struct LayerNormParams {
  bool epsValid;
  float eps;
};

// The functions, one pointer type each (see SynapseApi in synapse_device.cpp).
using synInitialize_t = Status (*)();
using synDestroy_t = Status (*)();
using synDeviceAcquireByDeviceType_t = Status (*)(DeviceId*, DeviceType);
using synDeviceRelease_t = Status (*)(DeviceId);
using synStreamCreateGeneric_t = Status (*)(StreamHandle*, DeviceId, std::uint32_t);
using synStreamDestroy_t = Status (*)(StreamHandle);
using synStreamSynchronize_t = Status (*)(StreamHandle);
using synDeviceMalloc_t = Status (*)(DeviceId, std::uint64_t, std::uint64_t, std::uint32_t,
                                     std::uint64_t*);
using synDeviceFree_t = Status (*)(DeviceId, std::uint64_t, std::uint32_t);
using synHostMap_t = Status (*)(DeviceId, std::uint64_t, const void*);
using synHostUnmap_t = Status (*)(DeviceId, const void*);
using synMemCopyAsync_t = Status (*)(StreamHandle, std::uint64_t, std::uint64_t, std::uint64_t,
                                     std::uint32_t);
using synGraphCreate_t = Status (*)(GraphHandle*, DeviceType);
using synGraphDestroy_t = Status (*)(GraphHandle);
using synSectionCreate_t = Status (*)(SectionHandle*, std::uint64_t, GraphHandle);
using synSectionDestroy_t = Status (*)(SectionHandle);
using synTensorHandleCreate_t = Status (*)(Tensor*, GraphHandle, std::uint32_t, const char*);
using synTensorAssignToSection_t = Status (*)(Tensor, SectionHandle, std::uint64_t);
using synTensorSetGeometry_t = Status (*)(Tensor, const TensorGeometry*, std::uint32_t);
using synTensorSetDeviceDataType_t = Status (*)(Tensor, std::uint32_t);
using synTensorDestroy_t = Status (*)(Tensor);
using synNodeCreate_t = Status (*)(GraphHandle, const Tensor*, const Tensor*, std::uint32_t,
                                   std::uint32_t, const void*, std::uint32_t, const char*,
                                   const char*, const char**, const char**);
using synGraphCompile_t = Status (*)(RecipeHandle*, GraphHandle, const char*, const char*);
using synWorkspaceGetSize_t = Status (*)(std::uint64_t*, RecipeHandle);
using synTensorRetrieveIds_t = Status (*)(RecipeHandle, const char**, std::uint64_t*,
                                          std::uint32_t);
using synLaunchExt_t = Status (*)(StreamHandle, const LaunchTensorInfoExt*, std::uint32_t,
                                  std::uint64_t, RecipeHandle, std::uint32_t);
using synRecipeDestroy_t = Status (*)(RecipeHandle);

}  // namespace assistgen::hpu::syn

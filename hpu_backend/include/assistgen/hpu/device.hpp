// The Device interface of the HPU backend: device memory, host<->device
// copies, graph compilation into recipes and recipe launches, in the shape of
// Habana's Synapse runtime (synDeviceMalloc, synMemCopyAsync, synGraphCompile,
// synWorkspaceGetSize, synLaunchExt). Two implementations:
//
// - the CPU reference device (make_cpu_reference_device): "device memory" is
//   host memory, compile() validates the graph and plans its workspace,
//   launch() executes the IR with Eigen kernels. It runs everywhere and is
//   what the tests check against cpu::Transformer.
// - the Synapse device (make_synapse_device): Habana's C API loaded at run
//   time with dlopen, so nothing Habana is needed to build. Without
//   libSynapse.so it throws "Gaudi runtime libSynapse.so not found".
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "assistgen/hpu/graph.hpp"

namespace assistgen::hpu {

/// A device address (what synDeviceMalloc returns).
using DeviceAddress = std::uint64_t;

/// A compiled graph. Destroying it frees the device recipe.
class Recipe {
 public:
  virtual ~Recipe() = default;
  /// The graph it was compiled from (tensor names, shapes, kinds).
  virtual const Graph& graph() const = 0;
  /// Bytes of workspace a launch needs for the intermediates.
  virtual std::size_t workspace_bytes() const = 0;
};

/// The device memory of one non-intermediate tensor of a launch.
struct Binding {
  std::string name;           ///< the graph tensor's name
  DeviceAddress address = 0;  ///< device memory of the tensor
};

/// Device memory, copies, compilation and launches. Implementations are
/// thread-safe for allocation and compilation; launches on one device are
/// serialised by the caller's stream semantics (the reference device runs
/// them synchronously).
class Device {
 public:
  virtual ~Device() = default;

  /// "cpu-reference" or "synapse".
  virtual std::string name() const = 0;

  /// Allocates `bytes` (> 0) of device memory. Throws CapacityError when out
  /// of memory.
  virtual DeviceAddress allocate(std::size_t bytes) = 0;
  /// Frees an address returned by allocate(); 0 is ignored.
  virtual void free(DeviceAddress address) noexcept = 0;
  /// Copies host memory to the device (complete when the call returns).
  virtual void copy_to_device(DeviceAddress dst, const void* src, std::size_t bytes) = 0;
  /// Copies device memory to the host (complete when the call returns).
  virtual void copy_to_host(void* dst, DeviceAddress src, std::size_t bytes) = 0;
  /// Waits for every launched recipe to finish.
  virtual void synchronize() = 0;

  /// Compiles a validated graph. Throws InvalidArgument for a bad graph,
  /// Error when the device's compiler fails.
  virtual std::shared_ptr<const Recipe> compile(const Graph& graph) = 0;
  /// Launches `recipe` with every input, weight, state and output tensor
  /// bound, and `workspace` (>= recipe.workspace_bytes(), 0 when that is 0).
  /// Throws InvalidArgument naming a missing or foreign binding.
  virtual void launch(const Recipe& recipe, std::span<const Binding> bindings,
                      DeviceAddress workspace) = 0;
};

/// Device memory owned by RAII: freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates `bytes` on `device`.
  DeviceBuffer(std::shared_ptr<Device> device, std::size_t bytes)
      : device_(std::move(device)), bytes_(bytes), address_(device_->allocate(bytes)) {}
  /// Takes over `o`'s memory.
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : device_(std::move(o.device_)),
        bytes_(std::exchange(o.bytes_, 0)),
        address_(std::exchange(o.address_, 0)) {}
  /// Frees this buffer's memory and takes over `o`'s.
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      device_ = std::move(o.device_);
      bytes_ = std::exchange(o.bytes_, 0);
      address_ = std::exchange(o.address_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  /// Device address (0 when empty).
  DeviceAddress address() const { return address_; }
  /// Size in bytes.
  std::size_t bytes() const { return bytes_; }
  /// Whether it holds memory.
  explicit operator bool() const { return address_ != 0; }

  /// Copies `bytes` from the host to offset `offset` of this buffer.
  void upload(const void* src, std::size_t bytes, std::size_t offset = 0) {
    check(bytes, offset);
    device_->copy_to_device(address_ + offset, src, bytes);
  }
  /// Copies `bytes` at offset `offset` of this buffer to the host.
  void download(void* dst, std::size_t bytes, std::size_t offset = 0) const {
    check(bytes, offset);
    device_->copy_to_host(dst, address_ + offset, bytes);
  }

 private:
  void check(std::size_t bytes, std::size_t offset) const;
  void reset() noexcept {
    if (device_ && address_) device_->free(address_);
    address_ = 0;
    bytes_ = 0;
  }
  std::shared_ptr<Device> device_;
  std::size_t bytes_ = 0;
  DeviceAddress address_ = 0;
};

/// The CPU reference device: executes the IR on the host.
std::shared_ptr<Device> make_cpu_reference_device();

/// How to reach the Synapse runtime.
struct SynapseOptions {
  /// Passed to dlopen: a file name searched on LD_LIBRARY_PATH, or a path.
  std::string library = "libSynapse.so";
  /// The synDeviceType value given to synDeviceAcquireByDeviceType and
  /// synGraphCreate. The default is our reading of Habana's enum for Gaudi2;
  /// see docs/hpu.md (not verified on hardware).
  std::uint32_t device_type = 4;
};

/// A device on Habana's Synapse C API, loaded with dlopen. Throws Error
/// "Gaudi runtime libSynapse.so not found ..." when the library cannot be
/// loaded, Error naming the symbol when one is missing, and Error naming the
/// call and its status when the runtime fails (e.g. no Gaudi device).
std::shared_ptr<Device> make_synapse_device(const SynapseOptions& options = {});

}  // namespace assistgen::hpu

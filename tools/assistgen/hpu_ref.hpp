// --backend hpu-ref for the CLI's commands: the HPU backend's static-shape
// graphs on its CPU reference device (docs/hpu.md), with the options it can
// honour; the others are usage errors naming them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "assistgen/generate.hpp"
#include "commands.hpp"

namespace assistgen::cli {

/// The HPU compute type --dtype asks for: f32 (also when not given), bf16 or
/// fp8 (E4M3 weights, per-channel scales); int8 / int4 are a UsageError
/// naming --dtype.
DType hpu_dtype(const CLI::Option* o_dtype, const std::string& value);

/// Loads model directories onto hpu::Transformer with kv_len buckets for
/// `positions` cache positions (hpu::options_for) and `dtype`, and prints,
/// when asked, each model's graph compilations at warm-up and after.
/// UnsupportedError when this assistgen was built without the HPU backend.
class HpuRefLoader {
 public:
  HpuRefLoader(std::size_t positions, DType dtype) : positions_(positions), dtype_(dtype) {}
  /// A LoadModelOptions::backend for load_model (text mode).
  std::function<LoadedBackend(const std::filesystem::path&)> backend();
  /// Prints "hpu-ref DIR: N graphs compiled at warm-up, M after" per model loaded.
  void report() const;

 private:
  std::size_t positions_;
  DType dtype_;
  std::shared_ptr<std::vector<std::function<void()>>> reports_ =
      std::make_shared<std::vector<std::function<void()>>>();
};

}  // namespace assistgen::cli

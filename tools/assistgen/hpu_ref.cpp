// --backend hpu-ref: see hpu_ref.hpp.
#include "hpu_ref.hpp"

#include <cstdio>

#ifdef ASSISTGEN_CLI_HAS_HPU
#include "assistgen/hpu/transformer.hpp"
#endif

namespace assistgen::cli {

DType hpu_dtype(const CLI::Option* o_dtype, const std::string& value) {
  if (!given(o_dtype) || value == "f32") return DType::f32;
  if (value == "bf16") return DType::bf16;
  if (value == "fp8" || value == "f8_e4m3") return DType::f8_e4m3;
  throw UsageError("--dtype " + value +
                   " does not apply to --backend hpu-ref: its graphs compute in f32, bf16 or fp8");
}

std::function<LoadedBackend(const std::filesystem::path&)> HpuRefLoader::backend() {
#ifdef ASSISTGEN_CLI_HAS_HPU
  return [positions = positions_, dtype = dtype_,
          reports = reports_](const std::filesystem::path& dir) {
    hpu::LoadOptions o = hpu::options_for(positions);
    o.dtype = dtype;
    auto m = std::make_shared<const hpu::Transformer>(hpu::Transformer::load(dir, o));
    const std::size_t warm = m->graph_cache().stats().misses;
    reports->push_back([m, warm, name = dir.string()] {
      const std::size_t total = m->graph_cache().stats().misses;
      std::printf("hpu-ref %s: %zu graphs compiled at warm-up, %zu after\n", name.c_str(), warm,
                  total - warm);
    });
    const ModelConfig config = m->config();
    return LoadedBackend{AnyModel(std::move(m)), config};
  };
#else
  throw UnsupportedError("--backend hpu-ref: this assistgen was built without the HPU backend");
#endif
}

void HpuRefLoader::report() const {
  for (const auto& r : *reports_) r();
}

}  // namespace assistgen::cli

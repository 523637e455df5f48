// hpu::text_backend: hpu::Transformer behind load_model's backend hook.
#include "assistgen/hpu/text.hpp"

#include <memory>

namespace assistgen::hpu {

std::function<LoadedBackend(const std::filesystem::path& dir)> text_backend(LoadOptions options) {
  return [options = std::move(options)](const std::filesystem::path& dir) {
    auto model = std::make_shared<const Transformer>(Transformer::load(dir, options));
    const ModelConfig config = model->config();
    return LoadedBackend{AnyModel(std::move(model)), config};
  };
}

std::function<LoadedBackend(const std::filesystem::path& dir)> text_backend(
    std::shared_ptr<Device> device) {
  return text_backend(options_for(2048, std::move(device)));
}

}  // namespace assistgen::hpu

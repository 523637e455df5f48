// The architecture registry table. To add a family: write its descriptor in
// one file (see arch_gpt2.cpp for the shape) and add it to kRegistry below.
#include "assistgen/architecture.hpp"

#include "assistgen/error.hpp"

namespace assistgen {

// Defined in arch_llama.cpp and arch_gpt2.cpp.
extern const Architecture kLlamaArchitecture, kMistralArchitecture, kQwen2Architecture, kGpt2Architecture;

namespace {

const Architecture* const kRegistry[] = {
    &kLlamaArchitecture,
    &kMistralArchitecture,
    &kQwen2Architecture,
    &kGpt2Architecture,
};

}  // namespace

std::span<const Architecture* const> architectures() { return kRegistry; }

const Architecture* find_architecture(std::string_view name) {
  for (const Architecture* a : kRegistry)
    if (a->name == name) return a;
  return nullptr;
}

const Architecture* find_architecture_by_model_type(std::string_view model_type) {
  for (const Architecture* a : kRegistry)
    if (a->model_type == model_type) return a;
  return nullptr;
}

std::string supported_architectures() {
  std::string out;
  for (const Architecture* a : kRegistry) {
    if (!out.empty()) out += ", ";
    out += a->name;
  }
  return out;
}

const Architecture& architecture_of(const ModelConfig& c) {
  const Architecture* a = find_architecture(c.architecture);
  if (a == nullptr)
    throw UnsupportedError("architecture '" + c.architecture +
                           "' is not supported; supported architectures: " + supported_architectures());
  return *a;
}

}  // namespace assistgen

// Reading a weight's stored group-quantized form (GGUF's 4- and 6-bit block
// types) for the grouped kernels, so a file's codes, scales and mins are
// packed as stored instead of being decoded to floats and quantized again.
#include <omp.h>

#include <string>

#include "assistgen/io/safetensors.hpp"
#include "transformer_impl.hpp"

namespace assistgen::cpu::detail {

std::optional<io::GroupQuantized> read_grouped(const io::Checkpoint& ck, const WeightSource& src,
                                               std::size_t cols, std::vector<std::string>& used) {
  if (src.transposed || src.parts.empty()) return std::nullopt;
  for (const TensorPart& part : src.parts)
    if (!ck.tensor(part.name).quantized) return std::nullopt;
  std::vector<io::GroupQuantized> parts;
  for (const TensorPart& part : src.parts) {
    const io::TensorView& t = ck.tensor(part.name);
    const std::vector<std::int64_t> want{static_cast<std::int64_t>(part.rows),
                                         static_cast<std::int64_t>(cols)};
    if (t.shape != want)
      throw FormatError(ck.dir().string() + ": tensor '" + part.name + "' has shape [" +
                        std::to_string(t.shape.empty() ? 0 : t.shape[0]) + ", ...] (" +
                        std::to_string(t.shape.size()) + " dimensions) but the config implies [" +
                        std::to_string(part.rows) + ", " + std::to_string(cols) + "]");
    parts.push_back(t.quantized());
    used.push_back(part.name);
  }
  return parts.size() == 1 ? std::move(parts.front()) : io::stack_groups(parts);
}

}  // namespace assistgen::cpu::detail

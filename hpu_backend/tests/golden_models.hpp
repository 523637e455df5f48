// The checkpoints of tests/data/models that have golden logits, and the
// token sequences the HPU tests run through them.
#pragma once

#include <algorithm>
#include <filesystem>
#include <vector>

#include "assistgen/types.hpp"

namespace hpu_test {

inline const std::filesystem::path kModels =
    std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";
inline const std::vector<assistgen::Token> kTokens = {1,   17, 200, 45, 3,  99,
                                                      128, 7,  255, 64, 31, 180};
inline const std::vector<assistgen::Token> kPrompt = {1, 17, 200, 45, 3, 99};

/// Every model directory with a golden.safetensors, sorted.
inline std::vector<std::filesystem::path> models() {
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(kModels))
    if (std::filesystem::exists(e.path() / "golden.safetensors")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

}  // namespace hpu_test

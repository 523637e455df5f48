// Shared by the golden tests: where the test checkpoints live and how to read
// the id tensors of their golden.safetensors files (tests/data/README.md).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <span>
#include <vector>

#include "assistgen/io/safetensors.hpp"

namespace golden {

inline const std::filesystem::path kModels = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models";

/// The token ids of an I32 tensor.
inline std::vector<assistgen::Token> read_ids(const assistgen::io::TensorView& t) {
  REQUIRE(t.dtype == assistgen::DType::i32);
  std::vector<assistgen::Token> ids(t.numel());
  std::memcpy(ids.data(), t.data.data(), ids.size() * sizeof(assistgen::Token));
  return ids;
}

/// Index of the largest logit (the first on ties).
inline std::size_t argmax(std::span<const float> row) {
  return static_cast<std::size_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace golden

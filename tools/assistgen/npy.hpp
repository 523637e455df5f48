// Writes a float32 matrix as a NumPy .npy file (format version 1.0).
#pragma once

#include <cstddef>
#include <filesystem>

namespace assistgen::cli {

void write_npy_f32(const std::filesystem::path& path, const float* data, std::size_t rows,
                   std::size_t cols);

}  // namespace assistgen::cli

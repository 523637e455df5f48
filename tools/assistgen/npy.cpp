#include "npy.hpp"

#include <fstream>
#include <string>

#include "assistgen/error.hpp"

namespace assistgen::cli {

void write_npy_f32(const std::filesystem::path& path, const float* data, std::size_t rows,
                   std::size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' padded to 64 bytes.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open '" + path.string() + "' for writing");
  f.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<std::uint16_t>(header.size());
  const char le[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(le, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(data),
          static_cast<std::streamsize>(rows * cols * sizeof(float)));
  if (!f) throw IoError("failed writing '" + path.string() + "'");
}

}  // namespace assistgen::cli

// Internal: the one way the library reads a small file it did not write
// (config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
// model.safetensors.index.json). Whatever the path names (a FIFO, a link to
// /dev/zero or /dev/urandom, a directory, a file that grows while read), the
// read neither blocks nor allocates more than the limit of that kind of file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace assistgen::io::detail {

/// Size limits of the JSON files a model directory holds: far above any real
/// file, far below what would exhaust memory once parsed.
inline constexpr std::size_t kMaxConfigJsonBytes = std::size_t{16} << 20;     ///< config.json, generation_config.json, index
inline constexpr std::size_t kMaxTokenizerConfigBytes = std::size_t{64} << 20;  ///< tokenizer_config.json
inline constexpr std::size_t kMaxTokenizerJsonBytes = std::size_t{256} << 20;   ///< tokenizer.json

/// Reads the whole of `path`, which must be a regular file (after following
/// links) of at most `max_bytes` bytes. The file is opened without blocking,
/// so a FIFO is refused instead of waited on. IoError when it does not exist,
/// cannot be opened or read, or is not a regular file (a directory, FIFO,
/// device or socket); FormatError when it is larger than `max_bytes`. Every
/// message starts with the path.
std::string read_bounded_file(const std::filesystem::path& path, std::size_t max_bytes);

/// Whether `path` names anything at all (a dangling link does not): optional
/// files (tokenizer_config.json) are skipped only when absent, never because
/// they are a directory or a FIFO.
bool path_exists(const std::filesystem::path& path);

}  // namespace assistgen::io::detail

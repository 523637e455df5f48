// Model directories with a tokenizer for the text-API tests: a test checkpoint
// of tests/data/models/ (no tokenizer, 256 logit rows) copied into a temporary
// directory together with one of the small tokenizers of tests/data/text/
// (made by tools/make_text_fixtures.py), plus an optional generation_config.json.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace text_fixtures {

namespace fs = std::filesystem;

inline const fs::path kData = ASSISTGEN_TEST_DATA_DIR;

/// A per-process scratch directory, removed at exit.
inline const fs::path& scratch() {
  struct Dir {
    fs::path path = fs::temp_directory_path() / ("assistgen_text_" + std::to_string(::getpid()));
    Dir() { fs::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

/// `models/<model>` + `text/<tokenizer>` as `<scratch>/<name>`; a non-empty
/// `generation_config` replaces the tokenizer directory's generation_config.json.
inline fs::path make_model_dir(const std::string& name, const std::string& model,
                               const std::string& tokenizer,
                               const std::string& generation_config = "") {
  const fs::path dir = scratch() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kData / "models" / model))
    if (e.path().filename() != "golden.safetensors")
      fs::copy_file(e.path(), dir / e.path().filename());
  for (const auto& e : fs::directory_iterator(kData / "text" / tokenizer))
    fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  if (!generation_config.empty())
    std::ofstream(dir / "generation_config.json") << generation_config;
  return dir;
}

}  // namespace text_fixtures

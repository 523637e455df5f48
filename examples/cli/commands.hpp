// The CLI's subcommands: a name, the --help text, and the function to run.
#pragma once

#include <string>
#include <vector>

#include "assistgen/types.hpp"

namespace assistgen::cli {

struct Command {
  std::string name;
  const char* help;
  int (*run)(const std::vector<std::string>& args);
};

const std::vector<Command>& commands();

int run_logits(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);
const char* generate_help();
int run_tokenize(const std::vector<std::string>& args);
const char* tokenize_help();
int run_bench(const std::vector<std::string>& args);
const char* bench_help();
/// The value of --dtype: f32, bf16 or int8 (i8); a UsageError otherwise.
DType parse_dtype(const std::string& s);

}  // namespace assistgen::cli

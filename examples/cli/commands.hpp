// The CLI's subcommands: a name, the --help text, and the function to run.
#pragma once

#include <string>
#include <vector>

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

}  // namespace assistgen::cli

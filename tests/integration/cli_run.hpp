// Runs a command line for the CLI tests: its exit status and its output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace cli_run {

struct Run {
  int code;         ///< exit status (-1 when it did not exit normally)
  std::string out;  ///< what it printed
};

/// Runs `cmd` through the shell; stdout only (append 2>&1 for both).
inline Run shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// Runs the assistgen CLI with `args`, stdout and stderr together.
inline Run cli(const std::string& args) {
  return shell(std::string(ASSISTGEN_CLI) + " " + args + " 2>&1");
}

}  // namespace cli_run

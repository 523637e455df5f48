// Running a shell command line from a test (the CLI tests): its exit status
// and what it wrote to stdout (append " 2>&1" to the command for stderr too).
#pragma once

#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace shell_test {

struct Run {
  int code;         ///< exit status; -1 when the command did not exit normally
  std::string out;  ///< its stdout
};

inline Run shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// `s` as one single-quoted shell word.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// The assistgen CLI (ASSISTGEN_CLI) with `args`, stdout and stderr together.
inline Run cli(const std::string& args) {
  return shell(std::string(ASSISTGEN_CLI) + " " + args + " 2>&1");
}

}  // namespace shell_test

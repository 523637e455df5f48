// The assistgen command-line tool. Each subcommand lives in its own function;
// errors print one line naming the fault and exit non-zero (1 for runtime
// errors, 2 for usage errors).
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "args.hpp"
#include "commands.hpp"

namespace {

constexpr const char* kUsage = R"(assistgen: assisted generation (speculative decoding) on the CPU

usage: assistgen COMMAND [options]

commands:
  logits     logits of every position of a token sequence
  generate   greedy or sampled continuation of a text (-p) or of token ids,
             optionally assisted by a draft model
  tokenize   token ids of a text with a model's tokenizer
  bench      decode, verification and prefill speed against the memory-bandwidth bound

Run 'assistgen COMMAND --help' for the options of a command.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace assistgen;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    for (const auto& c : cli::commands())
      if (c.name == command) {
        for (const auto& a : args)
          if (a == "--help" || a == "-h") {
            std::fputs(c.help, stdout);
            return 0;
          }
        return c.run(args);
      }
    throw cli::UsageError("unknown command '" + command + "' (see assistgen --help)");
  } catch (const cli::UsageError& e) {
    std::cerr << "assistgen " << command << ": " << e.what() << "\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "assistgen " << command << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "assistgen " << command << ": unexpected error: " << e.what() << "\n";
    return 1;
  }
}

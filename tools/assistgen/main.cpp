// The assistgen command-line tool. Options are parsed by CLI11 (one
// subcommand per command, each in its own file); errors print one line
// naming the fault and exit non-zero: 2 for usage errors (anything wrong on
// the command line, found before a model is loaded), 1 for runtime errors.
// Warnings of the library (log.hpp) go to stderr, each distinct one once.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "assistgen/log.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  using namespace assistgen;
  CLI::App app{"assistgen: assisted generation (speculative decoding) on the CPU", "assistgen"};
  app.require_subcommand(1);
  app.footer("Run 'assistgen COMMAND --help' for the options of a command.");
  app.get_formatter()->column_width(32);
  const std::vector<cli::Command> commands{cli::add_logits(app),   cli::add_generate(app),
                                           cli::add_tokenize(app), cli::add_detokenize(app),
                                           cli::add_bench(app),    cli::add_chat(app),
                                           cli::add_template(app),  cli::add_batch(app),
                                           cli::add_serve(app)};

  // Under mpirun: MPI, and only rank 0 prints (tensor_parallel.cpp).
  cli::Ranks ranks(argc, argv, argc > 1 ? argv[1] : "");
  std::set<std::string> seen;
  set_warning_handler([&seen, &ranks](std::string_view message) {
    if (ranks.primary() && seen.emplace(message).second)
      std::cerr << "assistgen: warning: " << message << "\n" << std::flush;
  });

  const std::string first = argc > 1 ? argv[1] : "";
  if (argc < 2) {
    std::cerr << app.help();
    return 2;
  }
  if (first == "help") {
    std::cout << app.help();
    return 0;
  }
  std::string command = first;
  const bool known = std::any_of(commands.begin(), commands.end(),
                                 [&](const cli::Command& c) { return c.app->get_name() == first; });
  if (first[0] != '-' && !known) {
    std::cerr << "assistgen " << first << ": unknown command '" << first
              << "' (see assistgen --help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "assistgen" << (first[0] == '-' ? "" : " " + command) << ": " << e.what() << "\n";
    return 2;
  }
  try {
    for (const auto& c : commands)
      if (c.app->parsed()) return ranks.finish(command, c.run());
    return 2;  // unreachable: require_subcommand(1)
  } catch (const cli::UsageError& e) {
    return ranks.fail("assistgen " + command + ": " + e.what(), 2);
  } catch (const Error& e) {
    return ranks.fail("assistgen " + command + ": error: " + e.what(), 1);
  } catch (const std::exception& e) {
    return ranks.fail("assistgen " + command + ": unexpected error: " + e.what(), 1);
  }
}

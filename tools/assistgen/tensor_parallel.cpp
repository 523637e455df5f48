// The CLI under mpirun (docs/distributed.md): every rank runs the same
// command in lockstep on its share of the target; rank 0 alone writes to
// stdout; an error on any rank ends every rank with that rank's message.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "assistgen/cpu/transformer.hpp"
#include "commands.hpp"
#if ASSISTGEN_CLI_HAS_MPI
#include "assistgen/mpi/mpi.hpp"
#endif

namespace assistgen::cli {

namespace {

#if ASSISTGEN_CLI_HAS_MPI
std::optional<mpi::Environment> g_env;
#endif
std::shared_ptr<RankGroup> g_group;  // set when there is more than one rank
bool g_requested = false;            // a command asked for the target's group

// The launcher's rank count without MPI (a build without assistgen::mpi).
std::size_t ranks_in_environment() {
#if ASSISTGEN_CLI_HAS_MPI
  return mpi::launcher_ranks();
#else
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var))
      return static_cast<std::size_t>(std::strtoul(v, nullptr, 10));
  return 0;
#endif
}

}  // namespace

Ranks::Ranks(int& argc, char**& argv, const std::string& command) {
  const std::size_t launched = ranks_in_environment();
  if (launched <= 1) return;  // not under mpirun, or one rank: the whole model here
#if ASSISTGEN_CLI_HAS_MPI
  g_env.emplace(argc, argv);
  g_group = g_env->world();
  if (g_env->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
    g_env->abort("cannot redirect stdout to /dev/null");
  if (command != "generate" && command != "logits" && command != "bench" && command != "batch" &&
      command != "serve")
    g_env->abort("assistgen " + command + ": started by mpirun with " + std::to_string(launched) +
                     " ranks, but only generate, logits, bench, batch and serve split a model "
                     "across ranks (run it without mpirun)",
                 2);
#else
  (void)argc, (void)argv;
  std::fprintf(
      stderr,
      "assistgen %s: started by mpirun with %zu ranks, but this assistgen was built without MPI "
      "(ASSISTGEN_BUILD_MPI=OFF): each rank would run the whole model\n",
      command.c_str(), launched);
  std::exit(2);
#endif
}

Ranks::~Ranks() {
#if ASSISTGEN_CLI_HAS_MPI
  g_group.reset();
  g_env.reset();
#endif
}

bool Ranks::primary() const {
#if ASSISTGEN_CLI_HAS_MPI
  return !g_env || g_env->rank() == 0;
#else
  return true;
#endif
}

int Ranks::finish(const std::string& command, int status) const {
  if (status == 0 && g_group && !g_requested)
    return fail(
        "assistgen " + command + ": started by mpirun with " + std::to_string(g_group->size()) +
            " ranks, but these options load no target to split (each rank would repeat the whole "
            "work): run it without mpirun",
        2);
#if ASSISTGEN_CLI_HAS_MPI
  // Every rank leaves together, so that mpirun reports one status.
  if (g_env) g_env->world()->barrier();
#endif
  return status;
}

int Ranks::fail(const std::string& line, int status) const {
#if ASSISTGEN_CLI_HAS_MPI
  if (g_env) g_env->abort(line, status);
#endif
  std::cerr << line << "\n";
  return status;
}

std::shared_ptr<RankGroup> target_group() {
  g_requested = true;
  return g_group;
}

bool tensor_parallel() { return g_group != nullptr; }

bool primary_rank() { return !g_group || g_group->rank() == 0; }

void announce_split(const cpu::Transformer& model) {
  if (!g_group) return;
  std::fprintf(stderr, "tensor parallel: rank %zu of %zu, %.1f MB of weights on this rank\n",
               g_group->rank(), g_group->size(), static_cast<double>(model.weight_bytes()) / 1e6);
  std::fflush(stderr);
}

void announce_split(const Model& model) {
  if (const auto* t = model.backend().get_if<cpu::Transformer>()) announce_split(*t);
}

std::uint64_t same_on_every_rank(std::uint64_t value) {
  if (g_group) g_group->broadcast(&value, sizeof value, 0);
  return value;
}

std::string same_on_every_rank(std::string text) {
  if (!g_group) return text;
  text.resize(same_on_every_rank(std::uint64_t{text.size()}));
  if (!text.empty()) g_group->broadcast(text.data(), text.size(), 0);
  return text;
}

}  // namespace assistgen::cli

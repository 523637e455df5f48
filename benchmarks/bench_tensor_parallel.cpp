// The tensor-parallel target over MPI (docs/distributed.md), run under mpirun:
//   mpirun -np N bench_tensor_parallel [--dtype bf16|f32|i8|i4] [--threads T]
//                                      [--steps S] [--model tinyllama|small]
// prints (rank 0) per rank count:
//   1. the group's collectives on this machine: MPI_Allgatherv and MPI_Bcast
//      latency and bandwidth by message size (the inputs of the speed model);
//   2. a decode step and a 5-row verification of the TinyLlama-shaped random
//      model split over the ranks: median ms, and the share spent in the
//      gathers (slowest rank's view: time inside the collectives, waiting
//      for slower ranks included);
//   3. a draft (the "small" shape, ~25M parameters) proposing 4 tokens,
//      replicated on every rank versus run on rank 0 and broadcast.
// With -np 1 the model is whole (the baseline to compare against).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/mpi/mpi.hpp"

using namespace assistgen;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

ModelConfig
small_shape() {  // the "small" shape of bench_decode.cpp: TinyLlama's family, ~25M parameters
  ModelConfig c = tinyllama_shape();
  c.hidden_size = 512;
  c.intermediate_size = 1408;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(argc, argv);
  auto group = env.world();
  const bool root = env.rank() == 0;
  std::string dtype_name = "bf16", shape = "tinyllama";
  int threads = 1, steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dtype")
      dtype_name = v;
    else if (k == "--threads")
      threads = std::atoi(v.c_str());
    else if (k == "--steps")
      steps = std::atoi(v.c_str());
    else if (k == "--model")
      shape = v;
    else
      env.abort("unknown option " + k);
  }
  const DType dtype = dtype_name == "f32"  ? DType::f32
                      : dtype_name == "i8" ? DType::i8
                      : dtype_name == "i4" ? DType::i4
                                           : DType::bf16;
  const std::size_t n = env.size();
  if (root)
    std::printf("## bench_tensor_parallel: %zu rank(s) x %d thread(s), %s, kernels %s\n\n", n,
                threads, dtype_name.c_str(), cpu::kernel_isa());

  // 1. Collectives.
  if (n > 1) {
    if (root)
      std::printf(
          "| collective | bytes per rank | median us | GB/s received |\n|---|---|---|---|\n");
    for (std::size_t bytes : {8u, 256u, 4096u, 16384u, 65536u, 262144u, 1048576u}) {
      std::vector<char> mine(bytes, 1), all(bytes * n);
      const std::vector<std::size_t> counts(n, bytes);
      std::vector<double> t;
      const int reps = bytes <= 65536 ? 400 : 60;
      for (int r = 0; r < reps; ++r) {
        group->barrier();
        const auto t0 = Clock::now();
        group->all_gather(mine.data(), counts, all.data());
        t.push_back(seconds_since(t0));
      }
      const double m = median(t);
      if (root)
        std::printf("| allgather | %zu | %.1f | %.2f |\n", bytes, m * 1e6,
                    double(bytes * (n - 1)) / m / 1e9);
    }
    for (std::size_t bytes : {32u, 4096u}) {
      std::vector<char> buf(bytes, 1);
      std::vector<double> t;
      for (int r = 0; r < 400; ++r) {
        group->barrier();
        const auto t0 = Clock::now();
        group->broadcast(buf.data(), bytes, 0);
        t.push_back(seconds_since(t0));
      }
      if (root) std::printf("| broadcast | %zu | %.1f | |\n", bytes, median(t) * 1e6);
    }
    if (root) std::printf("\n");
  }

  // 2. The split target.
  cpu::LoadOptions lo;
  lo.dtype = dtype;
  lo.threads = threads;
  lo.tensor_parallel = group;
  const ModelConfig cfg = shape == "small" ? small_shape() : tinyllama_shape();
  auto t0 = Clock::now();
  const cpu::Transformer target = cpu::Transformer::random(cfg, 1, lo);
  std::fprintf(
      stderr,
      "tensor parallel: rank %zu of %zu, %.1f MB of weights on this rank (made in %.1f s)\n",
      env.rank(), n, double(target.weight_bytes()) / 1e6, seconds_since(t0));
  group->barrier();
  const std::size_t context = 64;
  auto cache = target.make_cache(context + 2 * std::size_t(steps) * 5 + 8);
  std::vector<Token> prompt(context);
  for (std::size_t i = 0; i < context; ++i) prompt[i] = Token(1 + (i * 7919) % 30000);
  Logits out;
  target.forward(prompt, cache, out);
  auto time_rows = [&](std::size_t rows, const char* label) {
    std::vector<double> step, comm;
    std::vector<Token> tok(rows, 42);
    for (int s = 0; s < steps; ++s) {
      group->barrier();
      group->reset_traffic();
      const auto ts = Clock::now();
      target.forward(tok, cache, out);
      const double dt = seconds_since(ts);
      step.push_back(dt);
      comm.push_back(group->traffic().seconds);
      cache.truncate(context);
    }
    const auto tr = group->traffic();
    // The slowest rank's median step and largest communication share.
    double mine[2] = {median(step), median(comm) / median(step)}, all[16];
    const std::vector<std::size_t> counts(n, sizeof mine);
    group->all_gather(mine, counts, all);
    double worst_step = 0, worst_share = 0;
    for (std::size_t r = 0; r < n; ++r)
      worst_step = std::max(worst_step, all[2 * r]),
      worst_share = std::max(worst_share, all[2 * r + 1]);
    if (root)
      std::printf("| %s | %zu | %.2f | %.1f%% | %zu | %.0f |\n", label, rows, worst_step * 1e3,
                  100 * worst_share, tr.calls, double(tr.bytes) / 1e3);
  };
  if (root)
    std::printf(
        "| %s-shaped target | rows | median ms | in collectives | calls | kB received "
        "|\n|---|---|---|---|---|---|\n",
        shape.c_str());
  time_rows(1, "decode");
  time_rows(5, "verify K=4");

  // The gathers of one decode step replayed back to back after a barrier:
  // their own cost, without the waiting for a slower rank that the step's
  // figure above includes (shares as shard.hpp splits them).
  if (n > 1) {
    auto counts_of = [&](std::size_t total) {
      std::vector<std::size_t> c(n);
      for (std::size_t r = 0; r < n; ++r) c[r] = share_of(total, r, n).size() * sizeof(float);
      return c;
    };
    const std::size_t q_dim = cfg.num_attention_heads * cfg.head_dim;
    std::vector<std::size_t> q_counts = counts_of(cfg.num_attention_heads);  // whole heads
    for (auto& c : q_counts) c *= cfg.head_dim;
    const std::vector<std::vector<std::size_t>> layer{q_counts, counts_of(cfg.hidden_size),
                                                      counts_of(cfg.intermediate_size),
                                                      counts_of(cfg.hidden_size)};
    const std::vector<std::size_t> vocab = counts_of(cfg.vocab_size);
    std::vector<char> mine(cfg.vocab_size * 4 + q_dim * 4),
        all(mine.size() * 2 + cfg.vocab_size * 4 + q_dim * 4);
    std::vector<double> t;
    for (int s = 0; s < steps; ++s) {
      group->barrier();
      const auto ts = Clock::now();
      for (std::size_t l = 0; l < cfg.num_hidden_layers; ++l) {
        for (const auto& counts : layer) group->all_gather(mine.data(), counts, all.data());
      }
      group->all_gather(mine.data(), vocab, all.data());
      t.push_back(seconds_since(ts));
    }
    if (root)
      std::printf("\n%zu gathers of one decode step replayed back to back: %.3f ms (median)\n",
                  cfg.num_hidden_layers * 4 + 1, median(t) * 1e3);
  }

  // 3. The draft: replicated, or on rank 0 and broadcast.
  if (n > 1) {
    cpu::LoadOptions dlo;
    dlo.dtype = dtype;
    dlo.threads = threads;
    const cpu::Transformer draft = cpu::Transformer::random(small_shape(), 2, dlo);
    auto dc = draft.make_cache(context + 16);
    std::vector<Token> dp(prompt.begin(), prompt.end());
    draft.forward(dp, dc, out);
    auto propose = [&](Token* toks) {
      Token t = 42;
      for (int k = 0; k < 4; ++k) {
        const std::vector<Token> one{t};
        draft.forward(one, dc, out);
        const auto row = out.row(0);
        t = Token(std::max_element(row.begin(), row.end()) - row.begin());
        toks[k] = t;
      }
      dc.truncate(context);
    };
    std::vector<double> rep, bc;
    Token toks[4];
    for (int s = 0; s < steps; ++s) {
      group->barrier();
      auto ts = Clock::now();
      propose(toks);
      group->barrier();  // the round ends when the slowest rank has its tokens
      rep.push_back(seconds_since(ts));
      group->barrier();
      ts = Clock::now();
      if (root) propose(toks);
      group->broadcast(toks, sizeof toks, 0);
      bc.push_back(seconds_since(ts));
    }
    if (root)
      std::printf(
          "\n| draft (small shape, 4 tokens) | median ms per round |\n|---|---|\n| replicated on "
          "every rank | %.3f |\n"
          "| rank 0, then broadcast | %.3f |\n",
          median(rep) * 1e3, median(bc) * 1e3);
  }
  group->barrier();
  return 0;
}

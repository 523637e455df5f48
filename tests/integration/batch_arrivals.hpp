// Continuous batching under random arrivals, for the BatchEngine tests: jobs
// are submitted in a shuffled order, a random number of them before each
// round, and every streamed sequence must equal its result.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "assistgen/generation_config.hpp"
#include "assistgen/types.hpp"

namespace batch_test {

/// One sequence: its prompt and configuration.
struct Job {
  std::vector<assistgen::Token> prompt;
  assistgen::GenerationConfig cfg;
};

/// Runs `jobs` through `engine`, submitting them in a random order (from
/// `seed`), 0..max_arrivals of them before each round, and returns each
/// job's result in job order. `make_source(job)` makes a job's candidate
/// source. Fails (rather than spins) if the engine goes idle with a job
/// unfinished.
template <class Engine, class MakeSource>
std::vector<assistgen::GenerationResult> run_with_arrivals(Engine& engine,
                                                           const std::vector<Job>& jobs,
                                                           std::uint32_t seed,
                                                           std::size_t max_arrivals,
                                                           MakeSource&& make_source) {
  std::mt19937 rng(seed);
  std::vector<std::size_t> order(jobs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<assistgen::GenerationResult> results(jobs.size());
  std::vector<std::vector<assistgen::Token>> streamed(jobs.size());
  std::map<typename Engine::SequenceId, std::size_t> job_of;
  std::size_t next = 0, done = 0;
  auto take = [&] {
    for (auto& f : engine.take_finished()) {
      REQUIRE_FALSE(f.error);
      const std::size_t j = job_of.at(f.id);
      CHECK(streamed[j] == f.result.tokens);  // the stream is the result
      results[j] = std::move(f.result);
      ++done;
    }
  };
  while (done < jobs.size()) {
    for (std::size_t a = rng() % (max_arrivals + 1); a > 0 && next < order.size(); --a, ++next) {
      const std::size_t j = order[next];
      job_of[engine.submit(jobs[j].prompt, jobs[j].cfg, make_source(jobs[j]),
                           [&, j](assistgen::Token t) {
                             streamed[j].push_back(t);
                             return true;
                           })] = j;
    }
    const bool ran = engine.step();
    take();
    if (!ran && next == order.size()) break;
  }
  REQUIRE(done == jobs.size());
  return results;
}

}  // namespace batch_test

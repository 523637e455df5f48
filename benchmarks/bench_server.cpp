// The server under concurrent clients (docs/server.md, docs/performance.md):
// an assistgen::Server on loopback over a random TinyLlama-1.1B-shaped
// target (the model `assistgen bench` measures; the kjv tokenizer for text,
// the rows it has no token for masked), driven by 1 client and then by N
// clients at once, each sending streamed completions of a fixed length
// (ignore_eos) one after another. Prints per phase: aggregate tokens/s, the
// ratio to one client, p50 / p90 time to first token, mean batch, and the
// server's overhead (engine-thread time outside the engine) as a share of
// the rounds' time. Not a Google Benchmark: the figures are per phase.
//
//   bench_server [--model tinyllama|kjv] [--clients 8] [--requests 3] [--tokens 32] [--dtype
//   bf16|f32]
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/server.hpp"

namespace {

using namespace assistgen;
using Clock = std::chrono::steady_clock;

struct Phase {
  std::size_t clients = 0, tokens = 0, requests = 0, failed = 0;
  double seconds = 0;
  std::vector<double> ttft;
  ServerStats before, after;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * double(v.size() - 1) + 0.5))];
}

Phase run_phase(Server& server, std::size_t clients, std::size_t requests, std::size_t tokens) {
  Phase ph;
  ph.clients = clients;
  ph.before = server.stats();
  std::mutex m;
  const std::vector<std::string> prompts = {
      "And God said",        "In the beginning", "The LORD is my shepherd", "Blessed are the",
      "And it came to pass", "Thou shalt not",   "For God so loved",        "Jesus wept"};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", server.port());
      cli.set_read_timeout(600, 0);
      for (std::size_t r = 0; r < requests; ++r) {
        const nlohmann::json body = {{"prompt", prompts[(c + r) % prompts.size()]},
                                     {"max_tokens", tokens},
                                     {"temperature", 0},
                                     {"ignore_eos", true},
                                     {"stream", true},
                                     {"stream_options", {{"include_usage", true}}}};
        const auto start = Clock::now();
        double first = -1;
        std::string sse;
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/completions";
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        req.content_receiver = [&](const char* data, std::size_t n, uint64_t, uint64_t) {
          if (first < 0 &&
              std::string_view(data, n).find("\"text\":\"") != std::string_view::npos &&
              std::string_view(data, n).find("\"text\":\"\"") == std::string_view::npos)
            first = std::chrono::duration<double>(Clock::now() - start).count();
          sse.append(data, n);
          return true;
        };
        auto res = cli.send(req);
        std::size_t got = 0;
        const auto u = sse.rfind("\"completion_tokens\":");
        if (u != std::string::npos) got = std::strtoul(sse.c_str() + u + 20, nullptr, 10);
        std::lock_guard lock(m);
        ++ph.requests;
        if (!res || res->status != 200 || got != tokens) ++ph.failed;
        ph.tokens += got;
        if (first >= 0) ph.ttft.push_back(first);
      }
    });
  for (auto& t : threads) t.join();
  ph.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ph.after = server.stats();
  return ph;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "tinyllama", dtype = "bf16";
  std::size_t clients = 8, requests = 3, tokens = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      model = v;
    else if (k == "--clients")
      clients = std::stoul(v);
    else if (k == "--requests")
      requests = std::stoul(v);
    else if (k == "--tokens")
      tokens = std::stoul(v);
    else if (k == "--dtype")
      dtype = v;
    else {
      std::fprintf(stderr, "bench_server: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const std::string kjv = std::string(ASSISTGEN_MODELS_DIR) + "/kjv-target";
  const auto t_load = Clock::now();
  std::optional<Model> target;
  if (model == "tinyllama") {
    cpu::LoadOptions lo;
    lo.dtype = dtype == "f32" ? DType::f32 : DType::bf16;
    auto t = std::make_shared<const cpu::Transformer>(
        cpu::Transformer::random(tinyllama_shape(), 1, lo));
    target.emplace(AnyModel(t), load_model(kjv).tokenizer());
  } else {
    target.emplace(load_model(kjv));
  }
  std::printf(
      "bench_server: %s target (%s) ready in %.1f s; %zu requests of %zu tokens per client, "
      "streamed\n",
      model.c_str(), dtype.c_str(), std::chrono::duration<double>(Clock::now() - t_load).count(),
      requests, tokens);
  Server server(*target, nullptr, {.port = 0, .max_batch = std::max<std::size_t>(clients, 1)});
  server.start();
  run_phase(server, 1, 1, 4);  // warm-up
  std::printf(
      "| clients | tokens | seconds | tokens/s | vs 1 client | TTFT p50 | TTFT p90 | mean batch | "
      "server overhead |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  double single = 0;
  int failed = 0;
  for (const std::size_t c : {std::size_t{1}, clients}) {
    const Phase ph = run_phase(server, c, requests, tokens);
    const double tps = ph.tokens / ph.seconds;
    if (c == 1) single = tps;
    const double step = ph.after.step_seconds - ph.before.step_seconds;
    const double over = ph.after.overhead_seconds - ph.before.overhead_seconds;
    const double rounds = double(ph.after.engine.rounds - ph.before.engine.rounds);
    const double seq_rounds =
        double(ph.after.engine.sequence_rounds - ph.before.engine.sequence_rounds);
    std::printf(
        "| %zu | %zu | %.2f | %.2f | %.2fx | %.3f s | %.3f s | %.2f | %.2f%% of round time (%.3f "
        "ms per round) |\n",
        c, ph.tokens, ph.seconds, tps, single > 0 ? tps / single : 0.0, percentile(ph.ttft, 0.5),
        percentile(ph.ttft, 0.9), rounds > 0 ? seq_rounds / rounds : 0.0,
        step + over > 0 ? 100.0 * over / (step + over) : 0.0,
        rounds > 0 ? 1e3 * over / rounds : 0.0);
    failed += static_cast<int>(ph.failed);
  }
  server.stop();
  if (failed) std::printf("bench_server: %d requests failed\n", failed);
  return failed ? 1 : 0;
}

// assistgen serve: an OpenAI-compatible HTTP server (assistgen::Server,
// server.hpp) over the target, assisted by a draft, by prompt lookup or by
// its own first layers (--early-exit, self-speculation).
// Listens on loopback unless --host says otherwise; SIGINT / SIGTERM stop it
// gracefully (in-flight requests finish, or are cancelled after
// --shutdown-grace seconds).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "assistgen/generate.hpp"
#include "commands.hpp"
#if ASSISTGEN_CLI_HAS_SERVER
#include <pthread.h>

#include "assistgen/server.hpp"
#endif

namespace assistgen::cli {

namespace {

constexpr const char* kDescription =
    R"(Serves the target over the OpenAI HTTP API: POST /v1/completions and
/v1/chat/completions (with "stream": true as server-sent events), GET
/v1/models, /health and /metrics (Prometheus). Requests share target passes
through continuous batching; each output is exactly what `assistgen
generate` gives it alone. Chat uses the model's chat template, or --template
FILE. Prints "listening on http://HOST:PORT" once requests are accepted;
SIGINT or SIGTERM stops it gracefully. Under mpirun the target is split
across the ranks: rank 0 listens, the others replay its rounds; stop it with
SIGTERM to rank 0's process. See docs/server.md.)";

struct Args {
  std::string model, assistant, host = "127.0.0.1", api_key, model_name, template_file;
  int port = 8080;
  LoadArgs load;
  std::size_t max_batch = 8, max_queue = 64, max_cache_mb = 0, max_body_kb = 1024,
              http_threads = 64;
  std::size_t prompt_lookup = 0, draft_max = 0, early_exit = 0;
  double shutdown_grace = 10.0;
  CLI::Option *o_model, *o_assistant, *o_lookup, *o_draft_max, *o_template, *o_early_exit;
};

#if ASSISTGEN_CLI_HAS_SERVER
int run(const Args& a) {
  require_option(a.o_model);
  if (given(a.o_assistant) + given(a.o_lookup) + given(a.o_early_exit) > 1)
    throw UsageError("-a/--assistant, --prompt-lookup and --early-exit are alternatives: give one");
  require_with(a.o_draft_max, given(a.o_assistant) || given(a.o_lookup) || given(a.o_early_exit),
               "-a/--assistant, --prompt-lookup or --early-exit");
  a.load.check_draft(given(a.o_assistant));
  LoadModelOptions target_lo = a.load.options();
  // Under mpirun: split the target; the draft runs whole on every rank.
  target_lo.tensor_parallel = target_group();
  // A template is needed only by /v1/chat/completions: without one that
  // endpoint answers 400, the rest serves.
  std::optional<ChatTemplate> chat_template;
  if (given(a.o_template) || ChatTemplate::available(a.model))
    chat_template = load_template(a.model, a.template_file);
  Model loaded = load_with_progress(a.model, target_lo);
  announce_split(loaded);
  const Model target = chat_template
                           ? std::move(loaded).with_chat_template(std::move(*chat_template))
                           : std::move(loaded);
  std::optional<Model> draft;
  if (given(a.o_assistant)) draft.emplace(load_with_progress(a.assistant, a.load.draft_options()));

  ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  std::filesystem::path model_path(a.model);
  if (model_path.filename().empty()) model_path = model_path.parent_path();  // "dir/"
  so.model_name = a.model_name.empty() ? model_path.filename().string() : a.model_name;
  so.max_batch = a.max_batch;
  so.max_queue = a.max_queue;
  so.max_cache_bytes = a.max_cache_mb << 20;
  so.api_key = a.api_key;
  so.max_body_bytes = a.max_body_kb << 10;
  so.http_threads = a.http_threads;
  so.shutdown_grace_seconds = a.shutdown_grace;
  if (given(a.o_lookup)) so.defaults.prompt_lookup_num_tokens = a.prompt_lookup;
  if (given(a.o_early_exit)) {
    check_early_exit(target, a.early_exit);
    so.defaults.assistant_early_exit = a.early_exit;
  }
  if (given(a.o_draft_max)) so.defaults.num_assistant_tokens = a.draft_max;
  so.ranks =
      target_lo.tensor_parallel;  // under mpirun: rank 0 serves, the others follow its rounds

  // SIGINT / SIGTERM are taken by sigwait on this thread: blocked before
  // the server's threads start, so they inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  Server server(target, draft ? &*draft : nullptr, so);
  server.start();
  if (!primary_rank()) {
    // Under mpirun, the other ranks replay rank 0's rounds until it stops
    // (SIGINT / SIGTERM stay blocked here: mpirun forwards them to every
    // rank, and rank 0's graceful stop decides when they end).
    server.wait();
    return 0;
  }
  const std::string assisted = draft                   ? " assisted by " + a.assistant
                               : given(a.o_early_exit) ? " assisted by its first " +
                                                             std::to_string(a.early_exit) + " layers"
                                                       : "";
  std::printf("assistgen serve: %s%s listening on http://%s:%d (model \"%s\", max batch %zu%s)\n",
              a.model.c_str(), assisted.c_str(),
              a.host.c_str(), server.port(), so.model_name.c_str(), so.max_batch,
              so.api_key.empty() ? "" : ", API key required");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "assistgen serve: %s: stopping (in-flight requests have %.0f s to finish)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", so.shutdown_grace_seconds);
  server.stop();
  const ServerStats s = server.stats();
  std::fprintf(
      stderr,
      "assistgen serve: stopped: %zu requests (%zu rejected, %zu client errors, %zu failed, %zu "
      "cancelled), %zu tokens generated in %zu rounds (mean batch %.2f); server overhead %.2f%% of "
      "the engine thread's busy time\n",
      s.requests, s.rejected, s.client_errors, s.failed, s.cancelled, s.completion_tokens,
      s.engine.rounds, s.engine.mean_batch(),
      s.step_seconds + s.overhead_seconds > 0
          ? 100.0 * s.overhead_seconds / (s.step_seconds + s.overhead_seconds)
          : 0.0);
  return 0;
}
#else
int run(const Args&) {
  throw UsageError(
      "this assistgen was built without the server (configure with -DASSISTGEN_BUILD_SERVER=ON)");
}
#endif

}  // namespace

Command add_serve(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("serve", "serve the model over an OpenAI-compatible HTTP API");
  sub->description(kDescription);
  a->o_model = sub->add_option("-m,--model", a->model,
                               "target model: HF directory or .gguf file (required)");
  a->o_assistant =
      sub->add_option("-a,--assistant", a->assistant, "draft (assistant) model for every request");
  a->o_lookup =
      sub->add_option("--prompt-lookup", a->prompt_lookup,
                      "no draft model: propose N tokens by n-gram lookup in every request")
          ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
  a->o_early_exit =
      sub->add_option("--early-exit", a->early_exit,
                      "self-speculation: the target's first E layers draft for every request "
                      "(not with -a or --prompt-lookup)")
          ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  a->o_draft_max =
      sub->add_option("--draft-max", a->draft_max, "K: tokens drafted per round (default 5)")
          ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
  sub->add_option("--host", a->host, "address to listen on (loopback by default)")
      ->capture_default_str();
  sub->add_option("--port", a->port, "TCP port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--model-name", a->model_name,
                  "model id in /v1/models and responses (default: the model directory's name)");
  sub->add_option("--api-key", a->api_key,
                  "require 'Authorization: Bearer KEY' on /v1/ and /metrics");
  a->o_template = sub->add_option("--template", a->template_file,
                                  "chat template file (Jinja) for chat requests");
  sub->add_option("--max-batch", a->max_batch, "sequences verified together per round")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  sub->add_option("--max-queue", a->max_queue,
                  "requests waiting for the batch; more get 503 + Retry-After")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--max-cache-mb", a->max_cache_mb, "bound on the KV caches in MiB (0: none)")
      ->capture_default_str();
  sub->add_option("--max-body-kb", a->max_body_kb, "largest request body in KiB (else 413)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--http-threads", a->http_threads,
                  "HTTP worker threads (one per open connection)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  sub->add_option(
         "--shutdown-grace", a->shutdown_grace,
         "seconds in-flight requests may run after SIGINT/SIGTERM before they are cancelled")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  a->load.add_to(*sub);
  return {sub, [a] { return run(*a); }};
}

}  // namespace assistgen::cli

// assistgen::Server: an OpenAI-compatible HTTP server over TextBatchEngine
// (text_engine.hpp), the library's continuous batching. It owns no decoding
// logic: HTTP threads parse a request, submit it to the engine and wait for
// (or stream) its text; one engine thread runs the rounds. Every request
// shares target passes with the others, and its output is exactly what
// Model::generate gives it alone.
//
//   auto target = assistgen::load_model("models/kjv-target");
//   auto draft  = assistgen::load_model("models/kjv-draft");
//   assistgen::Server server(target, &draft, {.port = 8080, .model_name = "kjv"});
//   server.start();   // listens on 127.0.0.1:8080, serves in background threads
//   server.wait();    // until server.stop() (e.g. from a signal handler's thread)
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (with
// "stream": true as server-sent events), GET /v1/models, GET /health,
// GET /metrics (Prometheus text). The request fields, the error JSON, the
// queue and shutdown rules are in docs/server.md.
//
// Link assistgen::server (src/server/, which links cpp-httplib); this header
// includes no HTTP library, so embedding programs need none of its headers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "assistgen/generate.hpp"
#include "assistgen/tensor_parallel.hpp"

namespace assistgen {

/// How a Server listens, batches and limits requests.
struct ServerOptions {
  /// Address to listen on; loopback unless the caller asks otherwise.
  std::string host = "127.0.0.1";
  /// TCP port; 0: any free port (Server::port() says which).
  int port = 8080;
  /// Name of the model in /v1/models and in responses; a request naming
  /// another model is a 404 (model_not_found). Empty: "assistgen".
  std::string model_name = "assistgen";
  /// Sequences verified together in one round (BatchGenerateOptions::max_batch).
  std::size_t max_batch = 8;
  /// Bound on the KV caches' bytes (BatchGenerateOptions::max_cache_bytes); 0: none.
  std::size_t max_cache_bytes = 0;
  /// Requests waiting for a place in the batch; a request beyond them is
  /// refused at once with 503 and a Retry-After header.
  std::size_t max_queue = 64;
  /// Seconds sent in Retry-After with a 503.
  int retry_after_seconds = 1;
  /// Bearer token every /v1/ and /metrics request must carry
  /// ("Authorization: Bearer KEY"; else 401). Empty: no key.
  std::string api_key = {};
  /// Largest request body accepted (else 413).
  std::size_t max_body_bytes = 1 << 20;
  /// HTTP worker threads (each holds one connection while it is open).
  std::size_t http_threads = 64;
  /// Options every request starts from (a request's own fields override
  /// them), e.g. prompt_lookup_num_tokens or num_assistant_tokens; unset
  /// fields take the target's generation_config.json values.
  GenerateOptions defaults = {};
  /// stop(): seconds in-flight requests may still run before they are cancelled.
  double shutdown_grace_seconds = 10.0;
  /// The ranks of a target split over several processes (the group it was
  /// loaded with: LoadModelOptions::tensor_parallel); null or one rank: this
  /// process alone. Every rank makes a Server over its share of the target,
  /// with the same assistant and options, and calls start(): rank 0 listens
  /// and answers; the others listen on nothing (port() is 0) and run rank
  /// 0's engine rounds in lockstep (before each round, rank 0 sends them the
  /// requests that arrived and the ones cancelled since the last). On those
  /// ranks stop() and wait() return once rank 0 has stopped. A rank 0 that
  /// cannot start must end the job (MPI_Abort), or the others wait for it.
  std::shared_ptr<RankGroup> ranks = nullptr;
};

/// Counters of a Server since it started (also in /metrics).
struct ServerStats {
  std::size_t requests = 0;           ///< generation requests accepted (200 or streamed)
  std::size_t rejected = 0;           ///< refused with 503 (queue full or shutting down)
  std::size_t client_errors = 0;      ///< answered with a 4xx
  std::size_t failed = 0;             ///< failed after they were accepted (5xx / error event)
  std::size_t cancelled = 0;          ///< cancelled: client gone mid-stream, or shutdown
  std::size_t prompt_tokens = 0;      ///< prompt tokens of finished requests
  std::size_t completion_tokens = 0;  ///< tokens generated for finished requests
  /// Engine-thread seconds outside BatchEngine::step() plus inside the
  /// server's text callbacks: the server's own share of a round's time.
  double overhead_seconds = 0.0;
  double step_seconds = 0.0;  ///< engine-thread seconds inside step()
  BatchStats engine = {};     ///< the engine's counters
  std::size_t running = 0;    ///< sequences in the batch now
  std::size_t waiting = 0;    ///< sequences queued now
};

/// An OpenAI-compatible HTTP server over `target`, assisted by `assistant`
/// (may be null). The models must outlive the server; a chat template must
/// be attached to `target` (Model::with_chat_template) for
/// /v1/chat/completions (else that endpoint answers 400). Not copyable.
class Server {
 public:
  /// Checks `options` (InvalidArgument naming the field: max_batch,
  /// max_queue, max_body_bytes, http_threads, port); listens only after start().
  Server(const Model& target, const Model* assistant = nullptr, ServerOptions options = {});
  /// stop(), then releases everything.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds host:port and serves in background threads; returns once
  /// requests are accepted. IoError when the address cannot be bound.
  void start();
  /// The port listened on (the chosen one when ServerOptions::port is 0);
  /// 0 before start().
  int port() const;
  /// Graceful shutdown: new requests get 503; in-flight ones run to their
  /// end for up to shutdown_grace_seconds, then are cancelled (a stream
  /// ends with an error event, a waiting request with 503); then the
  /// listener and the engine thread stop. Safe to call more than once, from
  /// any thread but a request handler.
  void stop();
  /// Blocks until stop() has finished. On a rank other than 0 of a split
  /// target (ServerOptions::ranks): until rank 0 has stopped; then rethrows
  /// the error that took this rank out of step with rank 0, if one did.
  void wait();
  /// The counters now.
  ServerStats stats() const;
  /// The /metrics text (Prometheus exposition format).
  std::string metrics_text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace assistgen

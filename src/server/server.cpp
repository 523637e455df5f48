// assistgen::Server: the OpenAI HTTP API (cpp-httplib, nlohmann-json) over
// TextBatchEngine. HTTP threads parse and check a request (protocol.cpp),
// submit it and wait for its text (or stream it as server-sent events);
// the engine thread steps rounds while any sequence runs and hands each
// piece of text and each finished sequence to the request that owns it.
// With a split target (ServerOptions::ranks), rank 0 serves and journals
// its engine calls; the other ranks replay them and run the same rounds
// (lockstep.hpp).
#include "assistgen/server.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>

#include "assistgen/error.hpp"
#include "assistgen/text_engine.hpp"
#include "connection.hpp"
#include "lockstep.hpp"
#include "protocol.hpp"

namespace assistgen {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using server::ApiError;

// How often a non-streaming request checks that its client is still there.
constexpr std::chrono::milliseconds kDisconnectPoll{50};

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One accepted generation request, shared by its HTTP thread and the
// engine thread.
struct Pending {
  std::mutex m;
  std::condition_variable cv;
  std::string unsent;  // text not yet taken by the HTTP thread
  bool done = false;
  TextBatchEngine::Finished finished;
  std::string failure;            // the engine failed (a model error): the message
  std::atomic<bool> gone{false};  // the client left: stop generating
  TextBatchEngine::SequenceId id = 0;
  Clock::time_point submitted;
  Clock::time_point first_text;
  bool has_first = false;
};

}  // namespace

struct Server::Impl {
  Impl(const Model& t, const Model* a, ServerOptions o)
      : target(t),
        options(std::move(o)),
        engine(t, a, {.max_batch = options.max_batch, .max_cache_bytes = options.max_cache_bytes}),
        ranks(options.ranks),
        lockstep(ranks && ranks->size() > 1),
        follower(lockstep && ranks->rank() != 0) {}

  const Model& target;
  ServerOptions options;
  TextBatchEngine engine;

  // A split target: every engine call that changes which sequences run is
  // journaled (under order_mutex, which a round also holds on rank 0), and
  // the journal goes to the other ranks before each round.
  std::shared_ptr<RankGroup> ranks;
  const bool lockstep;  // more than one rank
  const bool follower;  // not rank 0: replays rank 0's rounds, serves nothing
  std::mutex order_mutex;
  server::Journal journal;
  std::exception_ptr follower_error;  // why a follower left step (rethrown by wait())
  bool joined = false;                // a follower's stop() joined its thread

  // Lockstep: the engine's calls and rounds in one order (else no lock).
  std::unique_lock<std::mutex> ordered() {
    return lockstep ? std::unique_lock(order_mutex) : std::unique_lock<std::mutex>();
  }

  // engine.cancel, journaled.
  bool cancel(TextBatchEngine::SequenceId id) {
    auto order = ordered();
    const bool cancelled = engine.cancel(id);
    if (cancelled && lockstep) journal.cancelled(id);
    return cancelled;
  }
  httplib::Server http;
  std::thread listener, stepper;
  int bound_port = 0;
  std::time_t started_at = std::time(nullptr);

  // Submissions and the engine thread's lookup of their requests.
  std::mutex submit_mutex;
  std::map<TextBatchEngine::SequenceId, std::shared_ptr<Pending>> pending;
  bool accepting = true;

  // Wakes the engine thread.
  std::mutex work_mutex;
  std::condition_variable work_cv;
  bool work = false, quit = false;

  // In-flight HTTP generations (until their response is written).
  std::mutex flight_mutex;
  std::condition_variable flight_cv;
  std::size_t in_flight = 0;

  // stop() / wait().
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false, stopped = false, started = false;

  // Counters.
  mutable std::mutex stats_mutex;
  ServerStats counters;
  std::atomic<std::int64_t> callback_ns{0};

  void count(std::size_t ServerStats::*field) {
    std::lock_guard lock(stats_mutex);
    ++(counters.*field);
  }

  void wake() {
    {
      std::lock_guard lock(work_mutex);
      work = true;
    }
    work_cv.notify_one();
  }

  void leave_flight() {
    {
      std::lock_guard lock(flight_mutex);
      --in_flight;
    }
    flight_cv.notify_all();
  }

  // The client left: its sequence stops at once (a running one at the next
  // round, a waiting one now) and its caches go back to the manager.
  void abandon(const std::shared_ptr<Pending>& p) {
    p->gone = true;
    if (cancel(p->id)) wake();
  }

  std::shared_ptr<Pending> submit(server::Job& job) {
    auto p = std::make_shared<Pending>();
    p->submitted = Clock::now();
    Pending* raw = p.get();
    TextCallback on_text = [this, raw](std::string_view piece) {
      const auto t0 = Clock::now();
      {
        std::lock_guard lock(raw->m);
        raw->unsent.append(piece);
        if (!raw->has_first) {
          raw->has_first = true;
          raw->first_text = t0;
        }
      }
      raw->cv.notify_one();
      callback_ns +=
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
      // Lockstep: the other ranks cannot see `gone`; abandon() cancels.
      return lockstep || !raw->gone.load();
    };
    {
      std::lock_guard lock(submit_mutex);
      if (!accepting) {
        count(&ServerStats::rejected);
        throw ApiError(503, "server_error", "the server is shutting down", "", "",
                       options.retry_after_seconds);
      }
      if (engine.waiting() >= options.max_queue) {
        count(&ServerStats::rejected);
        throw ApiError(503, "server_error",
                       "the server is busy: " + std::to_string(options.max_queue) +
                           " requests are already waiting (retry later)",
                       "", "", options.retry_after_seconds);
      }
      try {
        auto order = ordered();
        p->id = engine.submit(job.prompt, job.options, std::move(on_text));
        if (lockstep) journal.submitted(p->id, job.prompt, job.options);
      } catch (const CapacityError& e) {
        throw ApiError(400, "invalid_request_error", e.what(), job.prompt_param,
                       "context_length_exceeded");
      } catch (const Error& e) {
        throw ApiError(400, "invalid_request_error", e.what(), "", "");
      }
      pending.emplace(p->id, p);
      {
        std::lock_guard lock(flight_mutex);
        ++in_flight;
      }
    }
    count(&ServerStats::requests);
    wake();
    return p;
  }

  void deliver(std::vector<TextBatchEngine::Finished> done, const std::string& failure = {}) {
    for (auto& f : done) {
      std::shared_ptr<Pending> p;
      {
        std::lock_guard lock(submit_mutex);
        auto it = pending.find(f.id);
        if (it == pending.end()) continue;
        p = it->second;
        pending.erase(it);
      }
      {
        std::lock_guard lock(stats_mutex);
        counters.prompt_tokens += f.result.prompt_tokens.size();
        counters.completion_tokens += f.result.tokens.size();
        // A client that left stops its sequence through its callback (at
        // its next token) or through cancel(), whichever comes first.
        if (f.cancelled || p->gone) ++counters.cancelled;
      }
      {
        std::lock_guard lock(p->m);
        p->finished = std::move(f);
        if (!failure.empty() && p->failure.empty()) p->failure = failure;
        p->done = true;
      }
      p->cv.notify_all();
    }
  }

  // The engine thread: rounds while anything runs or waits, else sleeps.
  void run_engine() {
    for (;;) {
      {
        std::unique_lock lock(work_mutex);
        work_cv.wait(lock, [&] { return work || quit; });
        if (quit && engine.running() == 0 && engine.waiting() == 0) {
          auto order = ordered();
          if (lockstep) journal.send(*ranks, true);
          return;
        }
        work = false;
      }
      bool more = true;
      while (more) {
        const auto t0 = Clock::now();
        const std::int64_t cb0 = callback_ns.load();
        std::string failure;
        try {
          auto order = ordered();
          if (lockstep)
            journal.send(*ranks, false);  // the calls since the last round, then the round
          more = engine.step();
        } catch (const std::exception& e) {
          // A model error: every sequence in flight fails (cancelled, so
          // the next step retires them without calling the model).
          failure = std::string("the engine failed: ") + e.what();
          std::lock_guard lock(submit_mutex);
          for (auto& [id, p] : pending) {
            {
              std::lock_guard plock(p->m);
              p->failure = failure;
            }
            cancel(id);
          }
          more = true;
        }
        const auto t1 = Clock::now();
        deliver(engine.take_finished(), failure);
        const auto t2 = Clock::now();
        const double in_callbacks = double(callback_ns.load() - cb0) * 1e-9;
        std::lock_guard lock(stats_mutex);
        counters.step_seconds += seconds_between(t0, t1) - in_callbacks;
        counters.overhead_seconds += seconds_between(t1, t2) + in_callbacks;
      }
    }
  }

  // Another rank of a split target: rank 0's rounds, replayed, until it stops.
  void run_follower() {
    try {
      while (server::replay_round(*ranks, engine)) {
        try {
          engine.step();
        } catch (const std::exception&) {
          // Rank 0's round failed the same way: it cancels every request,
          // and its next message carries the cancellations.
        }
        engine.take_finished();
      }
    } catch (...) {
      follower_error = std::current_exception();
    }
    {
      std::lock_guard lock(stop_mutex);
      stopped = true;
    }
    stop_cv.notify_all();
  }

  // --- responses ------------------------------------------------------------

  void send_error(httplib::Response& res, const ApiError& e) {
    if (e.status >= 400 && e.status < 500 && e.status != 429) count(&ServerStats::client_errors);
    res.status = e.status;
    if (e.retry_after > 0) res.set_header("Retry-After", std::to_string(e.retry_after));
    res.set_content(server::error_json(e), "application/json");
  }

  json assistgen_block(const TextResult& r, const Pending& p) const {
    const GenerationStats& s = r.stats;
    const double total = seconds_between(p.submitted, Clock::now());
    json ids = json::array();
    for (const Token t : r.tokens) ids.push_back(t);
    return {{"stop_reason", std::string(stop_reason_name(r.stop_reason))},
            {"assistance", std::string(assistance_name(r.assistance))},
            {"completion_token_ids", std::move(ids)},
            {"drafted", s.drafted},
            {"accepted", s.accepted},
            {"acceptance_rate", s.acceptance_rate()},
            {"target_calls", s.target_calls},
            {"tokens_per_target_call", s.tokens_per_target_call()},
            {"time_to_first_token_seconds",
             p.has_first ? seconds_between(p.submitted, p.first_text) : total},
            {"queue_seconds", std::max(0.0, total - s.total_seconds)},
            {"total_seconds", total}};
  }

  static std::string finish_reason(StopReason r) {
    return r == StopReason::max_new_tokens || r == StopReason::capacity ? "length" : "stop";
  }

  std::string response_id(const server::Job& job, TextBatchEngine::SequenceId id) const {
    return std::string(job.chat ? "chatcmpl-" : "cmpl-") + std::to_string(started_at) + "-" +
           std::to_string(id);
  }

  json base_object(const server::Job& job, const std::string& id, bool chunk) const {
    return {{"id", id},
            {"object",
             job.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", static_cast<std::int64_t>(std::time(nullptr))},
            {"model", options.model_name}};
  }

  static json usage_of(const TextResult& r) {
    return {{"prompt_tokens", r.prompt_tokens.size()},
            {"completion_tokens", r.tokens.size()},
            {"total_tokens", r.prompt_tokens.size() + r.tokens.size()}};
  }

  // An error of an accepted request (engine failure, shutdown), or none.
  std::optional<ApiError> outcome_error(const Pending& p) const {
    if (!p.failure.empty()) return ApiError(500, "server_error", p.failure, "", "");
    if (p.finished.error) {
      try {
        std::rethrow_exception(p.finished.error);
      } catch (const CapacityError& e) {
        return ApiError(400, "invalid_request_error", e.what(), "", "context_length_exceeded");
      } catch (const std::exception& e) {
        return ApiError(500, "server_error", e.what(), "", "");
      }
    }
    if (p.finished.cancelled)
      return ApiError(503, "server_error", "the request was cancelled: the server is shutting down",
                      "", "", options.retry_after_seconds);
    return std::nullopt;
  }

  void complete(const httplib::Request& req, server::Job& job, httplib::Response& res) {
    std::shared_ptr<Pending> p = submit(job);
    // Nothing is written before the end, so the connection is watched: a
    // client that leaves has its sequence cancelled within a poll period.
    server::ConnectionWatch watch(req.local_addr, req.local_port, req.remote_addr,
                                  req.remote_port);
    {
      std::unique_lock lock(p->m);
      while (!p->cv.wait_for(lock, kDisconnectPoll, [&] { return p->done; })) {
        if (p->gone) continue;
        lock.unlock();
        if (watch.closed()) abandon(p);
        lock.lock();
      }
    }
    leave_flight();
    if (auto e = outcome_error(*p)) {
      count(&ServerStats::failed);
      return send_error(res, *e);
    }
    const TextResult& r = p->finished.result;
    json out = base_object(job, response_id(job, p->id), false);
    json choice = {
        {"index", 0}, {"finish_reason", finish_reason(r.stop_reason)}, {"logprobs", nullptr}};
    if (job.chat)
      choice["message"] = {{"role", "assistant"}, {"content", r.text}};
    else
      choice["text"] = r.text;
    out["choices"] = json::array({std::move(choice)});
    out["usage"] = usage_of(r);
    out["assistgen"] = assistgen_block(r, *p);
    res.set_content(server::dump(out), "application/json");
  }

  json chunk_json(const server::Job& job, const std::string& id, const std::string& text,
                  const json& finish, bool role = false) const {
    json c = base_object(job, id, true);
    json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
    if (job.chat) {
      json delta = json::object();
      if (role) delta["role"] = "assistant";
      if (role || !text.empty()) delta["content"] = text;
      choice["delta"] = std::move(delta);
    } else {
      choice["text"] = text;
    }
    c["choices"] = json::array({std::move(choice)});
    return c;
  }
  static std::string event(const json& j) { return "data: " + server::dump(j) + "\n\n"; }

  void stream(server::Job& job, httplib::Response& res) {
    std::shared_ptr<Pending> p = submit(job);
    const std::string id = response_id(job, p->id);
    auto first = std::make_shared<bool>(true);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, p, id, job, first](std::size_t, httplib::DataSink& sink) {
          std::string text;
          bool done = false;
          {
            std::unique_lock lock(p->m);
            p->cv.wait_for(lock, std::chrono::milliseconds(50),
                           [&] { return p->done || !p->unsent.empty(); });
            text.swap(p->unsent);
            done = p->done;
          }
          std::string out;
          if (*first && job.chat) out += event(chunk_json(job, id, "", nullptr, true));
          *first = false;
          if (!text.empty()) out += event(chunk_json(job, id, text, nullptr));
          if (done) {
            if (auto e = outcome_error(*p)) {
              count(&ServerStats::failed);
              out += "data: " + server::error_json(*e) + "\n\n";
            } else {
              const TextResult& r = p->finished.result;
              json last = chunk_json(job, id, "", finish_reason(r.stop_reason));
              last["assistgen"] = assistgen_block(r, *p);
              if (job.include_usage) last["usage"] = nullptr;
              out += event(last);
              if (job.include_usage) {
                json u = base_object(job, id, true);
                u["choices"] = json::array();
                u["usage"] = usage_of(r);
                out += event(u);
              }
            }
            out += "data: [DONE]\n\n";
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            abandon(p);
            return false;
          }
          if (done) sink.done();
          return true;
        },
        [this, p](bool success) {
          if (!success) abandon(p);
          if (!success) {
            // The sequence may still be running: its request ends when it
            // has left the engine (cancelled at the next round).
            std::unique_lock lock(p->m);
            p->cv.wait_for(lock, std::chrono::seconds(30), [&] { return p->done; });
          }
          leave_flight();
        });
  }

  void generation(const httplib::Request& req, httplib::Response& res, bool chat) {
    try {
      server::Job job =
          chat ? server::parse_chat(req.body, target, options.model_name, options.defaults)
               : server::parse_completion(req.body, target, options.model_name, options.defaults);
      if (job.stream)
        stream(job, res);
      else
        complete(req, job, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  }

  void routes() {
    http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(n); };
    http.set_payload_max_length(options.max_body_bytes);
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
    // second server on the same port would bind and share its connections.
    http.set_socket_options([](int sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
    });
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path == "/health")
        return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      if (auth == "Bearer " + options.api_key) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError(401, "invalid_request_error",
                               auth.empty()
                                   ? "missing API key: send the header 'Authorization: Bearer KEY'"
                                   : "incorrect API key provided",
                               "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                       httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 413)
        send_error(res, ApiError(413, "invalid_request_error",
                                 "the request body is larger than the server's limit of " +
                                     std::to_string(options.max_body_bytes) + " bytes",
                                 "", "request_too_large"));
      else if (res.status == 404)
        send_error(res,
                   ApiError(404, "invalid_request_error",
                            "no such endpoint: " + req.method + " " + req.path, "", "unknown_url"));
      else
        send_error(res, ApiError(res.status, "invalid_request_error",
                                 "bad request (HTTP " + std::to_string(res.status) + ")", "", ""));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          count(&ServerStats::failed);
          send_error(res, ApiError(500, "server_error", what, "", ""));
        });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      generation(req, res, false);
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      generation(req, res, true);
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      const json m = {{"id", options.model_name},
                      {"object", "model"},
                      {"created", static_cast<std::int64_t>(started_at)},
                      {"owned_by", "assistgen"}};
      res.set_content(server::dump({{"object", "list"}, {"data", json::array({m})}}),
                      "application/json");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      bool up;
      {
        std::lock_guard lock(submit_mutex);
        up = accepting;
      }
      res.status = up ? 200 : 503;
      res.set_content(server::dump({{"status", up ? "ok" : "shutting_down"}}), "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });
  }

  ServerStats snapshot() const {
    ServerStats s;
    {
      std::lock_guard lock(stats_mutex);
      s = counters;
    }
    s.engine = engine.stats();
    s.running = engine.running();
    s.waiting = engine.waiting();
    return s;
  }

  std::string metrics() const {
    const ServerStats s = snapshot();
    std::ostringstream o;
    o.precision(9);
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
      o << "# HELP assistgen_" << name << ' ' << help << "\n# TYPE assistgen_" << name << ' '
        << type << "\nassistgen_" << name << ' ' << value << '\n';
    };
    const BatchStats& e = s.engine;
    metric("requests_total", "counter", "Generation requests accepted.", s.requests);
    metric("requests_rejected_total", "counter",
           "Requests refused with 503 (queue full or shutting down).", s.rejected);
    metric("requests_client_errors_total", "counter", "Requests answered with a 4xx error.",
           s.client_errors);
    metric("requests_failed_total", "counter",
           "Accepted requests that failed (5xx or an error event).", s.failed);
    metric("requests_cancelled_total", "counter", "Requests cancelled (client gone, or shutdown).",
           s.cancelled);
    metric("prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           s.prompt_tokens);
    metric("generated_tokens_total", "counter", "Tokens generated for finished requests.",
           s.completion_tokens);
    metric("drafted_tokens_total", "counter", "Candidate tokens verified by the target.",
           e.drafted);
    metric("accepted_tokens_total", "counter", "Candidate tokens the target accepted.", e.accepted);
    metric("acceptance_rate", "gauge", "Accepted / drafted candidates since start.",
           e.acceptance_rate());
    metric("target_passes_total", "counter", "Target forward passes (one per round).",
           e.target_calls);
    metric("tokens_per_target_pass", "gauge", "Tokens emitted per target pass since start.",
           e.target_calls ? double(e.new_tokens) / double(e.target_calls) : 0.0);
    metric("queue_length", "gauge", "Requests waiting for a place in the batch.", s.waiting);
    metric("batch_size", "gauge", "Sequences in the batch now.", s.running);
    metric("batch_size_mean", "gauge", "Mean sequences per round since start.", e.mean_batch());
    metric("batch_size_max", "gauge", "Largest round since start.", e.max_batch_seen);
    metric("rounds_total", "counter", "Engine rounds.", e.rounds);
    metric("engine_seconds_total", "counter",
           "Engine-thread seconds inside rounds (server callbacks excluded).", s.step_seconds);
    metric("target_seconds_total", "counter", "Seconds inside target forward passes.",
           e.target_seconds);
    metric("draft_seconds_total", "counter", "Seconds inside batched draft forward passes.",
           e.draft_seconds);
    metric(
        "server_overhead_seconds_total", "counter",
        "Engine-thread seconds spent by the server outside the engine (text callbacks, hand-over).",
        s.overhead_seconds);
    return o.str();
  }
};

Server::Server(const Model& target, const Model* assistant, ServerOptions options) {
  if (options.max_batch == 0) throw InvalidArgument("ServerOptions: max_batch must be at least 1");
  if (options.max_queue == 0) throw InvalidArgument("ServerOptions: max_queue must be at least 1");
  if (options.max_body_bytes == 0)
    throw InvalidArgument("ServerOptions: max_body_bytes must be at least 1");
  if (options.http_threads == 0)
    throw InvalidArgument("ServerOptions: http_threads must be at least 1");
  if (options.port < 0 || options.port > 65535)
    throw InvalidArgument("ServerOptions: port " + std::to_string(options.port) +
                          " is not in [0, 65535]");
  if (options.model_name.empty()) options.model_name = "assistgen";
  if (options.ranks && options.ranks->rank() >= options.ranks->size())
    throw InvalidArgument("ServerOptions: ranks: rank " + std::to_string(options.ranks->rank()) +
                          " of a group of " + std::to_string(options.ranks->size()));
  impl_ = std::make_unique<Impl>(target, assistant, std::move(options));
  impl_->routes();
}

Server::~Server() {
  try {
    stop();
  } catch (...) {
  }
}

void Server::start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mutex);
    if (s.started) throw InvalidArgument("Server::start: the server was started already");
    s.started = true;
  }
  if (s.follower) {  // rank 0 listens; this rank replays its rounds
    s.stepper = std::thread([&s] { s.run_follower(); });
    return;
  }
  const std::string& host = s.options.host;
  if (s.options.port == 0) {
    s.bound_port = s.http.bind_to_any_port(host);
    if (s.bound_port <= 0) throw IoError("Server: cannot listen on " + host + " (any port)");
  } else {
    if (!s.http.bind_to_port(host, s.options.port))
      throw IoError("Server: cannot listen on " + host + ":" + std::to_string(s.options.port) +
                    " (address in use, or not an address of this machine)");
    s.bound_port = s.options.port;
  }
  s.stepper = std::thread([&s] { s.run_engine(); });
  s.listener = std::thread([&s] { s.http.listen_after_bind(); });
  // httplib's stop() does nothing before its loop runs: wait for it, so a
  // stop() right after start() cannot miss it.
  while (!s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

int Server::port() const { return impl_->bound_port; }

void Server::stop() {
  Impl& s = *impl_;
  if (s.follower) {  // stops when rank 0 does
    std::unique_lock lock(s.stop_mutex);
    if (!s.started || s.joined) return;
    s.stop_cv.wait(lock, [&] { return s.stopped; });
    s.joined = true;
    lock.unlock();
    s.stepper.join();
    return;
  }
  {
    std::unique_lock lock(s.stop_mutex);
    if (!s.started || s.stopped) return;
    if (s.stopping) {
      s.stop_cv.wait(lock, [&] { return s.stopped; });
      return;
    }
    s.stopping = true;
  }
  {
    std::lock_guard lock(s.submit_mutex);
    s.accepting = false;
  }
  const auto grace = std::chrono::duration<double>(std::max(0.0, s.options.shutdown_grace_seconds));
  {
    std::unique_lock lock(s.flight_mutex);
    if (!s.flight_cv.wait_for(lock, grace, [&] { return s.in_flight == 0; })) {
      lock.unlock();
      {
        std::lock_guard slock(s.submit_mutex);
        for (auto& [id, p] : s.pending) s.cancel(id);
      }
      s.wake();
      lock.lock();
      s.flight_cv.wait_for(lock, std::chrono::seconds(10), [&] { return s.in_flight == 0; });
    }
  }
  s.http.stop();
  if (s.listener.joinable()) s.listener.join();
  {
    std::lock_guard lock(s.work_mutex);
    s.quit = true;
  }
  s.work_cv.notify_one();
  if (s.stepper.joinable()) s.stepper.join();
  {
    std::lock_guard lock(s.stop_mutex);
    s.stopped = true;
  }
  s.stop_cv.notify_all();
}

void Server::wait() {
  Impl& s = *impl_;
  std::unique_lock lock(s.stop_mutex);
  s.stop_cv.wait(lock, [&] { return s.stopped || !s.started; });
  if (s.follower_error) std::rethrow_exception(s.follower_error);
}

ServerStats Server::stats() const { return impl_->snapshot(); }

std::string Server::metrics_text() const { return impl_->metrics(); }

}  // namespace assistgen

// assistgen::Server and TextBatchEngine on the demo models (kjv-target
// assisted by kjv-draft), through cpp-httplib's client on loopback:
// outputs under concurrency equal Model::generate / Model::chat (the
// one-sequence decoders, an independent path), the SSE stream carries the
// same text, every malformed request gets an OpenAI error JSON naming the
// field, and the queue bound, client disconnects, the API key and graceful
// shutdown behave as docs/server.md says. Every wait is bounded.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "assistgen/chat_template.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/server.hpp"
#include "assistgen/text_engine.hpp"
#include "server/lockstep.hpp"
#include "thread_ranks.hpp"

namespace {

using nlohmann::json;
using namespace assistgen;
using namespace std::chrono_literals;

const std::filesystem::path kModels = ASSISTGEN_MODELS_DIR;

struct Models {
  Model target, draft;
};

const Models& models() {
  static const Models m = [] {
    const auto dir = kModels / "kjv-target";
    std::ifstream in(std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "templates" /
                     "demo_chat.jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    Model t = load_model(dir, {.threads = 1})
                  .with_chat_template(ChatTemplate::from_string_for(ss.str(), dir));
    return Models{std::move(t), load_model(kModels / "kjv-draft", {.threads = 1})};
  }();
  return m;
}

// Waits up to `limit` for `done()`.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 10000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

ServerOptions local(ServerOptions o = {}) {
  o.port = 0;
  o.model_name = "kjv";
  return o;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
  std::string retry_after;
};

Reply post(int port, const std::string& path, const std::string& body,
           const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(240, 0);  // long generations under TSan (scripts/sanitize.sh) stay in time
  httplib::Headers h;
  if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
  auto r = c.Post(path.c_str(), h, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.retry_after = r->get_header_value("Retry-After");
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

Reply get(int port, const std::string& path, const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  httplib::Headers h;
  if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
  auto r = c.Get(path.c_str(), h);
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

// The JSON objects of an SSE body ("data: {...}" events; [DONE] last).
std::vector<json> events(const std::string& sse, bool* done = nullptr) {
  std::vector<json> out;
  std::istringstream in(sse);
  std::string line;
  if (done) *done = false;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      if (done) *done = true;
      continue;
    }
    out.push_back(json::parse(data));
  }
  return out;
}

std::vector<Token> ids_of(const json& j) {
  return j.at("assistgen").at("completion_token_ids").get<std::vector<Token>>();
}

double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("assistgen_" + name + " ", 0) == 0)
      return std::stod(line.substr(name.size() + 11));
  return -1;
}

}  // namespace

TEST_CASE("TextBatchEngine: sequences submitted over time give generate()'s text and ids") {
  const Models& m = models();
  TextBatchEngine engine(m.target, &m.draft, {.max_batch = 3});
  const std::vector<std::string> prompts = {"And God said", "In the beginning",
                                            "The LORD is my shepherd", "Blessed are the",
                                            "And it came to pass"};
  std::vector<std::string> streamed(prompts.size());
  std::vector<TextBatchEngine::SequenceId> ids;
  std::vector<TextBatchEngine::Finished> done;
  // Submit between rounds, so sequences join a running batch.
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back(engine.submit(std::string_view(prompts[i]),
                                {.max_new_tokens = 12 + 4 * i, .do_sample = false},
                                [&streamed, i](std::string_view p) {
                                  streamed[i] += p;
                                  return true;
                                }));
    engine.step();
    for (auto& f : engine.take_finished()) done.push_back(std::move(f));
  }
  engine.run();
  for (auto& f : engine.take_finished()) done.push_back(std::move(f));
  REQUIRE(done.size() == prompts.size());
  for (const auto& f : done) {
    const std::size_t i = static_cast<std::size_t>(f.id);
    const TextResult ref =
        m.target.generate(prompts[i], m.draft, {.max_new_tokens = 12 + 4 * i, .do_sample = false});
    CHECK_FALSE(f.error);
    CHECK(f.result.tokens == ref.tokens);
    CHECK(f.result.text == ref.text);
    CHECK(f.result.prompt_tokens == ref.prompt_tokens);
    CHECK(streamed[i] == ref.text);
    CHECK(f.result.assistance == Assistance::draft);
  }
}

TEST_CASE("TextBatchEngine: cancel ends a running sequence and frees its caches") {
  const Models& m = models();
  TextBatchEngine engine(m.target, &m.draft, {.max_batch = 2});
  const auto id =
      engine.submit(std::string_view("And God said"), {.max_new_tokens = 200, .do_sample = false});
  engine.step();
  REQUIRE(engine.running() == 1);
  REQUIRE(engine.cancel(id));
  CHECK_FALSE(engine.step());
  CHECK(engine.running() == 0);
  auto f = engine.take_finished();
  REQUIRE(f.size() == 1);
  CHECK(f[0].cancelled);
  CHECK(f[0].result.tokens.size() < 200);
  CHECK_FALSE(engine.cancel(id));
  // A waiting one leaves at once.
  const auto w = engine.submit(std::string_view("In the beginning"), {.max_new_tokens = 5});
  CHECK(engine.waiting() == 1);
  CHECK(engine.cancel(w));
  CHECK(engine.waiting() == 0);
  CHECK(engine.take_finished().at(0).cancelled);
}

TEST_CASE("Server: concurrent greedy completions and chats equal Model::generate and Model::chat") {
  const Models& m = models();
  Server server(m.target, &m.draft, local({.max_batch = 4}));
  server.start();
  const std::vector<std::string> prompts = {
      "And God said",        "In the beginning", "The LORD is my shepherd", "Blessed are the",
      "And it came to pass", "Jesus wept",       "Thou shalt not",          "For God so loved"};
  std::vector<std::future<Reply>> replies;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      const json body = {
          {"model", "kjv"}, {"prompt", prompts[i]}, {"max_tokens", 10 + 3 * i}, {"temperature", 0}};
      return post(server.port(), "/v1/completions", body.dump());
    }));
  const std::vector<ChatMessage> conv = {{"system", "Answer as the Bible would."},
                                         {"user", "What did God say?"}};
  auto chat = std::async(std::launch::async, [&] {
    json msgs = json::array();
    for (const auto& c : conv) msgs.push_back({{"role", c.role}, {"content", c.content}});
    return post(
        server.port(), "/v1/chat/completions",
        json{{"model", "kjv"}, {"messages", msgs}, {"max_tokens", 16}, {"temperature", 0}}.dump());
  });
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const Reply r = replies[i].get();
    REQUIRE(r.status == 200);
    const TextResult ref =
        m.target.generate(prompts[i], m.draft, {.max_new_tokens = 10 + 3 * i, .do_sample = false});
    CHECK(r.body["object"] == "text_completion");
    CHECK(r.body["model"] == "kjv");
    CHECK(r.body["choices"][0]["text"] == ref.text);
    CHECK(ids_of(r.body) == ref.tokens);
    CHECK(r.body["usage"]["prompt_tokens"] == ref.prompt_tokens.size());
    CHECK(r.body["usage"]["completion_tokens"] == ref.tokens.size());
    CHECK(r.body["usage"]["total_tokens"] == ref.prompt_tokens.size() + ref.tokens.size());
    CHECK(r.body["choices"][0]["finish_reason"] ==
          (ref.stop_reason == StopReason::eos ? "stop" : "length"));
    CHECK(r.body["assistgen"]["drafted"] == ref.stats.drafted);
    CHECK(r.body["assistgen"]["accepted"] == ref.stats.accepted);
    CHECK(r.body["assistgen"]["assistance"] == "draft");
  }
  const Reply c = chat.get();
  REQUIRE(c.status == 200);
  const TextResult ref = m.target.chat(conv, m.draft, {.max_new_tokens = 16, .do_sample = false});
  CHECK(c.body["object"] == "chat.completion");
  CHECK(c.body["choices"][0]["message"]["role"] == "assistant");
  CHECK(c.body["choices"][0]["message"]["content"] == ref.text);
  CHECK(ids_of(c.body) == ref.tokens);
  CHECK(c.body["usage"]["prompt_tokens"] == ref.prompt_tokens.size());
  const ServerStats s = server.stats();
  CHECK(s.requests == prompts.size() + 1);
  CHECK(s.engine.max_batch_seen >= 2);  // requests shared rounds
  CHECK(s.engine.max_batch_seen <= 4);
}

TEST_CASE("Server: a streamed completion and chat carry the same text in OpenAI chunks") {
  const Models& m = models();
  Server server(m.target, &m.draft, local());
  server.start();
  const TextResult ref =
      m.target.generate("And God said", m.draft, {.max_new_tokens = 24, .do_sample = false});
  const Reply r =
      post(server.port(), "/v1/completions",
           R"({"prompt": "And God said", "max_tokens": 24, "temperature": 0, "stream": true,
                           "stream_options": {"include_usage": true}})");
  REQUIRE(r.status == 200);
  bool done = false;
  const std::vector<json> ev = events(r.raw, &done);
  CHECK(done);
  REQUIRE(ev.size() >= 3);
  std::string text;
  for (const json& e : ev) {
    CHECK(e["object"] == "text_completion");
    if (!e["choices"].empty()) text += e["choices"][0]["text"].get<std::string>();
  }
  CHECK(text == ref.text);
  const json& last = ev[ev.size() - 2];  // then the usage chunk
  CHECK(last["choices"][0]["finish_reason"] == "length");
  CHECK(ids_of(last) == ref.tokens);
  CHECK(ev.back()["choices"].empty());
  CHECK(ev.back()["usage"]["completion_tokens"] == ref.tokens.size());

  const TextResult cref = m.target.chat({{"user", "Who begat Enos?"}}, m.draft,
                                        {.max_new_tokens = 12, .do_sample = false});
  const Reply c = post(
      server.port(), "/v1/chat/completions",
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "Who begat Enos?"}]}],
                           "max_tokens": 12, "temperature": 0, "stream": true})");
  REQUIRE(c.status == 200);
  const std::vector<json> cev = events(c.raw, &done);
  CHECK(done);
  REQUIRE(cev.size() >= 2);
  CHECK(cev.front()["object"] == "chat.completion.chunk");
  CHECK(cev.front()["choices"][0]["delta"]["role"] == "assistant");
  std::string reply;
  for (const json& e : cev)
    if (e["choices"][0]["delta"].contains("content"))
      reply += e["choices"][0]["delta"]["content"].get<std::string>();
  CHECK(reply == cref.text);
  CHECK(ids_of(cev.back()) == cref.tokens);
}

TEST_CASE("Server: malformed requests get a 4xx OpenAI error naming the field") {
  const Models& m = models();
  Server server(m.target, &m.draft, local({.max_body_bytes = 4096}));
  server.start();
  struct Case {
    const char* path;
    std::string body;
    int status;
    const char* param;  // nullptr: null
    const char* code;   // nullptr: null
    const char* says;   // in the message
  };
  const std::string long_prompt = [] {
    std::string s;
    for (int i = 0; i < 400; ++i) s += "And God said, Let there be light. ";
    return s;
  }();
  const std::vector<Case> cases = {
      {"/v1/completions", "{\"prompt\": \"x\", ", 400, nullptr, nullptr, "not valid JSON"},
      {"/v1/completions", "[1, 2]", 400, nullptr, nullptr, "JSON object"},
      {"/v1/completions", R"({"max_tokens": 4})", 400, "prompt", nullptr, "required"},
      {"/v1/completions", R"({"prompt": 5})", 400, "prompt", nullptr, "prompt"},
      {"/v1/completions", R"({"prompt": ["a", "b"]})", 400, "prompt", nullptr, "one per request"},
      {"/v1/completions", R"({"prompt": [1, 99999999]})", 400, "prompt", nullptr, "token id"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": "ten"})", 400, "max_tokens", nullptr,
       "integer"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens", nullptr,
       "at least 1"},
      {"/v1/completions", R"({"prompt": "x", "temperature": "hot"})", 400, "temperature", nullptr,
       "number"},
      {"/v1/completions", R"({"prompt": "x", "temperature": 3})", 400, "temperature", nullptr,
       "[0, 2]"},
      {"/v1/completions", R"({"prompt": "x", "top_p": 0})", 400, "top_p", nullptr, "(0, 1]"},
      {"/v1/completions", R"({"prompt": "x", "seed": 1.5})", 400, "seed", nullptr, "integer"},
      {"/v1/completions", R"({"prompt": "x", "stop": [1]})", 400, "stop", nullptr, "strings"},
      {"/v1/completions", R"({"prompt": "x", "stop": ""})", 400, "stop", nullptr, "empty"},
      {"/v1/completions", R"({"prompt": "x", "n": 2})", 400, "n", nullptr, "must be 1"},
      {"/v1/completions", R"({"prompt": "x", "stream": "yes"})", 400, "stream", nullptr, "boolean"},
      {"/v1/completions", R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400,
       "stream_options", nullptr, "stream"},
      {"/v1/completions", R"({"prompt": "x", "logprobs": 5, "echo": true})", 400, "echo",
       "unsupported_parameter", "'echo', 'logprobs'"},
      {"/v1/completions", R"({"prompt": "x", "frequency_penalty": 0.5})", 400, "frequency_penalty",
       "unsupported_parameter", "frequency_penalty"},
      {"/v1/completions", R"({"prompt": "x", "model": "gpt-4"})", 404, "model", "model_not_found",
       "gpt-4"},
      {"/v1/completions", R"({"prompt": "x", "model": 7})", 400, "model", nullptr, "string"},
      {"/v1/completions", "{\"prompt\": \"bad \xff\xfe utf-8\"}", 400, nullptr, nullptr, "UTF-8"},
      {"/v1/completions", R"({"prompt": "\ud800 lone surrogate"})", 400, nullptr, nullptr,
       "not valid JSON"},
      {"/v1/completions", json{{"prompt", long_prompt.substr(0, 3000)}}.dump(), 400, "prompt",
       "context_length_exceeded", "context"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 1000000000})", 400, "max_tokens",
       "context_length_exceeded", "context"},
      {"/v1/completions", json{{"prompt", long_prompt}}.dump(), 413, nullptr, "request_too_large",
       "4096 bytes"},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages", nullptr, "non-empty"},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages", nullptr, "non-empty"},
      {"/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400, "messages[0].role",
       nullptr, "role"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 3}]})", 400,
       "messages[0].content", nullptr, "string"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})", 400,
       "messages[0].tool_calls", nullptr, "not supported"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", 400,
       "tools", "unsupported_parameter", "tools"},
      {"/v1/nothing", "{}", 404, nullptr, "unknown_url", "/v1/nothing"},
  };
  for (const Case& c : cases) {
    INFO(c.path << " " << c.body.substr(0, 120));
    const Reply r = post(server.port(), c.path, c.body);
    CHECK(r.status == c.status);
    REQUIRE(r.body.is_object());
    REQUIRE(r.body.contains("error"));
    const json& e = r.body["error"];
    CHECK(e["type"] == "invalid_request_error");
    CHECK(e["message"].get<std::string>().find(c.says) != std::string::npos);
    CHECK(e["param"] == (c.param ? json(c.param) : json(nullptr)));
    CHECK(e["code"] == (c.code ? json(c.code) : json(nullptr)));
  }
  // Neutral values of unsupported options, and nulls, are accepted.
  const Reply ok = post(
      server.port(), "/v1/completions",
      R"({"prompt": "x", "max_tokens": 2, "echo": false, "frequency_penalty": 0, "logprobs": null,
                            "user": "u", "n": 1, "seed": -3})");
  CHECK(ok.status == 200);
  // A model without a chat template: chat is a 400 naming messages.
  Server plain(models().draft, nullptr, local());
  plain.start();
  const Reply nt = post(plain.port(), "/v1/chat/completions",
                        R"({"messages": [{"role": "user", "content": "x"}]})");
  CHECK(nt.status == 400);
  CHECK(nt.body["error"]["param"] == "messages");
  CHECK(nt.body["error"]["message"].get<std::string>().find("chat template") != std::string::npos);
  // The server is still healthy after all of that.
  CHECK(get(server.port(), "/health").status == 200);
  CHECK(server.stats().client_errors == cases.size());
}

TEST_CASE("Server: the API key is required on /v1 and /metrics, not on /health") {
  const Models& m = models();
  Server server(m.target, nullptr, local({.api_key = "sekret"}));
  server.start();
  const Reply none = post(server.port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 1})");
  CHECK(none.status == 401);
  CHECK(none.body["error"]["code"] == "invalid_api_key");
  CHECK(post(server.port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 1})", "wrong")
            .status == 401);
  CHECK(get(server.port(), "/v1/models").status == 401);
  CHECK(get(server.port(), "/metrics").status == 401);
  CHECK(get(server.port(), "/health").status == 200);
  CHECK(post(server.port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 1})", "sekret")
            .status == 200);
  const Reply models_list = get(server.port(), "/v1/models", "sekret");
  CHECK(models_list.status == 200);
  CHECK(models_list.body["data"][0]["id"] == "kjv");
}

TEST_CASE("Server: /metrics counts requests, tokens, acceptance and batch sizes") {
  const Models& m = models();
  Server server(m.target, &m.draft, local());
  server.start();
  const Reply r = post(server.port(), "/v1/completions",
                       R"({"prompt": "And God said", "max_tokens": 16, "temperature": 0})");
  REQUIRE(r.status == 200);
  const std::string text = get(server.port(), "/metrics").raw;
  CHECK(text.find("# TYPE assistgen_requests_total counter") != std::string::npos);
  CHECK(metric(text, "requests_total") == 1);
  CHECK(metric(text, "generated_tokens_total") ==
        r.body["usage"]["completion_tokens"].get<double>());
  CHECK(metric(text, "prompt_tokens_total") == r.body["usage"]["prompt_tokens"].get<double>());
  CHECK(metric(text, "drafted_tokens_total") == r.body["assistgen"]["drafted"].get<double>());
  CHECK(metric(text, "accepted_tokens_total") == r.body["assistgen"]["accepted"].get<double>());
  CHECK(metric(text, "acceptance_rate") ==
        Approx(r.body["assistgen"]["acceptance_rate"].get<double>()));
  CHECK(metric(text, "tokens_per_target_pass") ==
        Approx(r.body["assistgen"]["tokens_per_target_call"].get<double>()));
  CHECK(metric(text, "queue_length") == 0);
  CHECK(metric(text, "batch_size") == 0);
  CHECK(metric(text, "batch_size_max") == 1);
  CHECK(metric(text, "server_overhead_seconds_total") >= 0);
  const Reply h = get(server.port(), "/health");
  CHECK(h.status == 200);
  CHECK(h.body["status"] == "ok");
}

TEST_CASE("Server: beyond the queue bound a request gets 503 with Retry-After") {
  const Models& m = models();
  // One sequence runs, one may wait: of many requests sent at once, those
  // that arrive while both places are taken are refused at once.
  Server server(m.target, nullptr,
                local({.max_batch = 1, .max_queue = 1, .retry_after_seconds = 7}));
  server.start();
  auto first = std::async(std::launch::async, [&] {
    return post(server.port(), "/v1/completions",
                R"({"prompt": "And God said", "max_tokens": 480, "ignore_eos": true})");
  });
  REQUIRE(eventually([&] { return server.stats().running == 1; }));
  std::vector<std::future<Reply>> replies;
  replies.push_back(std::move(first));
  for (int i = 0; i < 5; ++i)
    replies.push_back(std::async(std::launch::async, [&] {
      return post(server.port(), "/v1/completions",
                  R"({"prompt": "And God said", "max_tokens": 480, "ignore_eos": true})");
    }));
  std::size_t ok = 0, refused = 0;
  for (auto& f : replies) {
    const Reply r = f.get();
    if (r.status == 200) {
      ++ok;
      CHECK(r.body["usage"]["completion_tokens"] == 480);
    } else {
      CHECK(r.status == 503);
      CHECK(r.retry_after == "7");
      CHECK(r.body["error"]["type"] == "server_error");
      CHECK(r.body["error"]["message"].get<std::string>().find("busy") != std::string::npos);
      ++refused;
    }
  }
  CHECK(ok >= 2);
  CHECK(refused >= 1);
  CHECK(server.stats().rejected == refused);
  CHECK(server.stats().engine.max_batch_seen == 1);
}

TEST_CASE("Server: a client that leaves mid-stream frees its sequence at once") {
  const Models& m = models();
  Server server(m.target, &m.draft, local());
  server.start();
  httplib::Client c("127.0.0.1", server.port());
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body =
      R"({"prompt": "And God said", "max_tokens": 400, "temperature": 0, "stream": true, "ignore_eos": true})";
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, std::size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  auto res = c.send(req);
  CHECK(chunks == 3);  // the client stopped reading and closed the connection
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return server.stats().cancelled == 1 && server.stats().running == 0; },
                     5000ms));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  INFO("freed after " << ms << " ms");
  CHECK(ms < 2000);
  CHECK(server.stats().completion_tokens < 400);
  // The server goes on serving.
  CHECK(post(server.port(), "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status ==
        200);
}

TEST_CASE("Server: stop() lets in-flight requests finish and refuses new ones") {
  const Models& m = models();
  Server server(m.target, &m.draft, local({.shutdown_grace_seconds = 30}));
  server.start();
  const int port = server.port();
  auto inflight = std::async(std::launch::async, [&] {
    return post(
        port, "/v1/completions",
        R"({"prompt": "And God said", "max_tokens": 200, "temperature": 0, "ignore_eos": true})");
  });
  REQUIRE(eventually([&] { return server.stats().running == 1; }));
  auto stopper = std::async(std::launch::async, [&] { server.stop(); });
  // While stopping: health says so and a new request is a 503.
  REQUIRE(eventually([&] { return get(port, "/health").status == 503; }));
  const Reply late = post(port, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})");
  CHECK(late.status == 503);
  CHECK(late.body["error"]["message"].get<std::string>().find("shutting down") !=
        std::string::npos);
  const Reply r = inflight.get();
  CHECK(r.status == 200);
  const TextResult ref = m.target.generate(
      "And God said", m.draft,
      {.max_new_tokens = 200, .do_sample = false, .eos_token_id = std::vector<Token>{}});
  CHECK(r.body["choices"][0]["text"] == ref.text);
  CHECK(ids_of(r.body) == ref.tokens);
  CHECK(ref.tokens.size() == 200);
  REQUIRE(stopper.wait_for(30s) == std::future_status::ready);
  server.wait();
  CHECK(get(port, "/health").status == 0);  // nobody listens
}

TEST_CASE("Server: stop() cancels what outlives the grace period") {
  const Models& m = models();
  Server server(m.target, nullptr, local({.shutdown_grace_seconds = 0}));
  server.start();
  const int port = server.port();
  auto stream = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port);
    return c.Post(
        "/v1/completions",
        R"({"prompt": "And God said", "max_tokens": 480, "stream": true, "ignore_eos": true})",
        "application/json");
  });
  auto plain = std::async(std::launch::async, [&] {
    return post(port, "/v1/completions",
                R"({"prompt": "In the beginning", "max_tokens": 480, "ignore_eos": true})");
  });
  REQUIRE(eventually([&] { return server.stats().running == 2; }));
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  auto s = stream.get();
  REQUIRE(s);
  bool done = false;
  const std::vector<json> ev = events(s->body, &done);
  REQUIRE_FALSE(ev.empty());
  CHECK(ev.back().contains("error"));
  CHECK(ev.back()["error"]["message"].get<std::string>().find("shutting down") !=
        std::string::npos);
  CHECK(done);
  const Reply p = plain.get();
  CHECK(p.status == 503);
  CHECK(server.stats().cancelled == 2);
}

TEST_CASE("Server: bad options are refused by name") {
  const Models& m = models();
  CHECK_THROWS_WITH(Server(m.target, nullptr, {.max_batch = 0}), Catch::Contains("max_batch"));
  CHECK_THROWS_WITH(Server(m.target, nullptr, {.max_queue = 0}), Catch::Contains("max_queue"));
  CHECK_THROWS_WITH(Server(m.target, nullptr, {.port = 70000}), Catch::Contains("port"));
  Server a(m.target, nullptr, local());
  a.start();
  CHECK_THROWS_AS(Server(m.target, nullptr, {.port = a.port()}).start(), IoError);
}

namespace {

// A raw loopback connection that sends one HTTP request and can be closed
// without reading the response (a client that leaves).
class RawClient {
 public:
  RawClient(int port, const std::string& path, const std::string& body) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0);
    const std::string req = "POST " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace

TEST_CASE("Server: a client that leaves before a non-streamed response frees its sequence at once") {
  const Models& m = models();
  Server server(m.target, &m.draft, local());
  server.start();
  const int port = server.port();
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    INFO(path);
    const std::size_t cancelled = server.stats().cancelled;
    const std::string body =
        std::string(path) == "/v1/completions"
            ? R"({"prompt": "And God said", "max_tokens": 400, "temperature": 0, "ignore_eos": true})"
            : R"({"messages": [{"role": "user", "content": "Speak"}], "max_tokens": 400,
                 "temperature": 0, "ignore_eos": true})";
    RawClient client(port, path, body);
    // The request is running (some tokens generated), then the client goes.
    REQUIRE(eventually([&] {
      const ServerStats s = server.stats();
      return s.running == 1 && s.engine.new_tokens > 0;
    }));
    client.close();
    const auto t0 = std::chrono::steady_clock::now();
    // The metrics show it: cancelled, nothing left in the batch or the queue.
    REQUIRE(eventually(
        [&] {
          const std::string text = get(port, "/metrics").raw;
          return metric(text, "requests_cancelled_total") == double(cancelled + 1) &&
                 metric(text, "batch_size") == 0 && metric(text, "queue_length") == 0;
        },
        5000ms));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO("freed after " << ms << " ms");
    CHECK(ms < 2000);
    CHECK(server.stats().running == 0);
  }
  CHECK(server.stats().completion_tokens < 800);  // neither ran to its end
  // The server goes on serving.
  CHECK(post(port, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status == 200);
}

TEST_CASE("Server: self-speculation (assistant_early_exit) requests equal Model::generate alone") {
  const Models& m = models();
  ServerOptions o = local({.max_batch = 4});
  o.defaults.assistant_early_exit = 2;  // assistgen serve --early-exit 2
  Server server(m.target, nullptr, o);
  server.start();
  const std::vector<std::string> prompts = {"And God said", "In the beginning", "Blessed are the",
                                            "And it came to pass", "Thou shalt not"};
  std::vector<std::future<Reply>> replies;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      json body = {{"prompt", prompts[i]}, {"max_tokens", 12 + 4 * i}};
      if (i % 2) {
        body["temperature"] = 0.9;
        body["seed"] = 10 + i;
      } else {
        body["temperature"] = 0;
      }
      return post(server.port(), "/v1/completions", body.dump());
    }));
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    INFO("request " << i);
    const Reply r = replies[i].get();
    REQUIRE(r.status == 200);
    GenerateOptions go{.max_new_tokens = 12 + 4 * i, .assistant_early_exit = 2};
    if (i % 2) {
      go.do_sample = true;
      go.temperature = 0.9f;
      go.seed = 10 + i;
    } else {
      go.do_sample = false;
    }
    const TextResult ref = m.target.generate(prompts[i], go);
    CHECK(r.body["choices"][0]["text"] == ref.text);
    CHECK(ids_of(r.body) == ref.tokens);
    CHECK(r.body["assistgen"]["assistance"] == "early_exit");
    CHECK(r.body["assistgen"]["accepted"] == ref.stats.accepted);
    if (!(i % 2))  // greedy: the target's own output
      CHECK(ref.tokens == m.target.generate(prompts[i], {.max_new_tokens = 12 + 4 * i,
                                                         .do_sample = false})
                              .tokens);
  }
  CHECK(server.stats().engine.max_batch_seen >= 2);
}

TEST_CASE(
    "Server: a target split over two ranks serves as one process, rank 1 replaying the rounds") {
  // The ranks are threads (test_ranks::ThreadRanks): each loads its share of
  // the target, as under mpirun; rank 0 listens, rank 1 replays its rounds.
  const Models& m = models();
  const auto dir = kModels / "kjv-target";
  test_ranks::ThreadRanks ranks(2);
  std::optional<Model> share[2], draft1;
  std::thread rank1(
      [&] { share[1].emplace(load_model(dir, {.threads = 1, .tensor_parallel = ranks.rank(1)})); });
  share[0].emplace(load_model(dir, {.threads = 1, .tensor_parallel = ranks.rank(0)})
                       .with_chat_template(m.target.chat_template()));
  rank1.join();
  draft1.emplace(load_model(kModels / "kjv-draft", {.threads = 1}));  // each rank its own draft

  ServerOptions o = local({.max_batch = 3});
  o.ranks = ranks.rank(0);
  Server server(*share[0], &m.draft, o);
  o.ranks = ranks.rank(1);
  Server follower(*share[1], &*draft1, o);
  follower.start();  // listens on nothing
  server.start();
  CHECK(follower.port() == 0);
  CHECK(server.port() > 0);

  // Completions (greedy and seeded sampling), a chat, and a stream whose
  // client leaves after three chunks (a cancellation rank 1 must replay),
  // arriving together: more requests than the batch holds.
  const std::vector<std::string> prompts = {"And God said", "In the beginning", "Jesus wept",
                                            "Blessed are the", "Thou shalt not"};
  auto body = [&](std::size_t i) {
    json b = {{"prompt", prompts[i]}, {"max_tokens", 8 + 4 * i}, {"temperature", 0}};
    if (i % 2 == 1) b.update({{"temperature", 0.8}, {"seed", 7 + i}});
    if (i == 0) b["stop"] = {" not"};  // ends the text early on every rank
    return b;
  };
  std::vector<std::future<Reply>> replies;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      return post(server.port(), "/v1/completions", body(i).dump());
    }));
  const std::vector<ChatMessage> conv = {{"user", "What did God say?"}};
  auto chat = std::async(std::launch::async, [&] {
    const json msgs = json::array({{{"role", "user"}, {"content", conv[0].content}}});
    return post(server.port(), "/v1/chat/completions",
                json{{"messages", msgs}, {"max_tokens", 12}, {"temperature", 0}}.dump());
  });
  auto leaver = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", server.port());
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = R"({"prompt": "And", "max_tokens": 400, "stream": true, "ignore_eos": true})";
    req.set_header("Content-Type", "application/json");
    int chunks = 0;
    req.content_receiver = [&](const char*, std::size_t, uint64_t, uint64_t) {
      return ++chunks < 3;
    };
    c.send(req);
    return chunks;
  });
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const Reply r = replies[i].get();
    REQUIRE(r.status == 200);
    GenerateOptions go{.max_new_tokens = 8 + 4 * i, .do_sample = i % 2 == 1};
    if (i % 2 == 1) {
      go.temperature = 0.8f;
      go.seed = 7 + i;
    }
    if (i == 0) go.stop = std::vector<std::string>{" not"};
    const TextResult ref = m.target.generate(prompts[i], m.draft, go);  // one process, unsplit
    INFO("request " << i);
    CHECK(ids_of(r.body) == ref.tokens);
    CHECK(r.body["choices"][0]["text"] == ref.text);
    if (i == 0) CHECK(ref.stop_reason == StopReason::stop_string);
  }
  const Reply c = chat.get();
  REQUIRE(c.status == 200);
  CHECK(ids_of(c.body) ==
        m.target.chat(conv, m.draft, {.max_new_tokens = 12, .do_sample = false}).tokens);
  CHECK(leaver.get() == 3);
  REQUIRE(eventually([&] { return server.stats().running == 0 && server.stats().waiting == 0; }));
  CHECK(server.stats().cancelled == 1);

  // Still in step after the cancellation.
  const Reply after = post(server.port(), "/v1/completions",
                           R"({"prompt": "For God so loved", "max_tokens": 10, "temperature": 0})");
  REQUIRE(after.status == 200);
  CHECK(ids_of(after.body) ==
        m.target.generate("For God so loved", m.draft, {.max_new_tokens = 10, .do_sample = false})
            .tokens);

  server.stop();
  follower.wait();  // returns once rank 0 stopped; rethrows if rank 1 left step
  follower.stop();
  const BatchStats s0 = server.stats().engine, s1 = follower.stats().engine;
  CHECK(s0.rounds >= 1);
  CHECK(s1.rounds == s0.rounds);  // the same rounds...
  CHECK(s1.target_calls == s0.target_calls);
  CHECK(s1.new_tokens == s0.new_tokens);  // ...with the same tokens
  CHECK(s1.accepted == s0.accepted);
  CHECK(s1.finished == s0.finished);
  CHECK(s0.max_batch_seen >= 2);
}

TEST_CASE("Server: the lockstep messages carry every option exactly") {
  GenerateOptions o;
  o.max_new_tokens = 9;
  o.temperature = 0.1f;  // not exact as a decimal
  o.top_p = std::nextafter(1.0f, 0.0f);
  o.seed = ~std::uint64_t{0};
  o.suppress_tokens = std::vector<Token>{3, 5};
  o.schedule = DraftLengthSchedule::confidence;
  o.tree_shape = std::vector<std::size_t>{2, 1};
  o.stop = std::vector<std::string>{"\n\n", "\xe2\x80\x94"};
  o.do_sample = true;
  const GenerateOptions back =
      server::decode_options(json::from_cbor(json::to_cbor(server::encode_options(o))));
  std::size_t fields = 0, same = 0;
  GenerateOptions::for_each_field(
      [&](const char*, const auto& a, const auto& b) {
        ++fields;
        same += a == b;
      },
      o, back);
  CHECK(same == fields);
  CHECK(std::memcmp(&*back.temperature, &*o.temperature, sizeof(float)) == 0);
}

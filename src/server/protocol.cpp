// The OpenAI request bodies, checked field by field (protocol.hpp). Options
// map onto GenerateOptions; a field of the API this server does not
// implement is refused by name unless it holds that field's neutral value
// (what the API does when the field is absent), so no request is silently
// served differently from what it asked for.
#include "protocol.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "assistgen/chat_template.hpp"
#include "assistgen/error.hpp"

namespace assistgen::server {

namespace {

using nlohmann::json;

ApiError bad(std::string message, std::string param, std::string code = "") {
  return ApiError(400, "invalid_request_error", std::move(message), std::move(param),
                  std::move(code));
}

json parse_body(std::string_view body) {
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    throw bad(std::string("the request body is not valid JSON in UTF-8: ") + e.what(), "");
  }
  if (!j.is_object())
    throw bad(std::string("the request body must be a JSON object, not ") + j.type_name(), "");
  return j;
}

// A field that is absent or null is not set.
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string type_of(const json& v) { return v.type_name(); }

std::size_t positive_int(const json& v, const char* key) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < 1)
    throw bad(std::string("'") + key + "' must be an integer of at least 1, not " + v.dump(), key);
  return static_cast<std::size_t>(v.get<std::int64_t>());
}

std::string short_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

double number_in(const json& v, const char* key, double lo, double hi, bool open_lo) {
  if (!v.is_number())
    throw bad(std::string("'") + key + "' must be a number, not " + type_of(v), key);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (open_lo && x == lo))
    throw bad(std::string("'") + key + "' must be in " + (open_lo ? "(" : "[") + short_number(lo) +
                  ", " + short_number(hi) + "], not " + v.dump(),
              key);
  return x;
}

// The fields both endpoints share; `known` collects the names handled.
void common_fields(const json& j, Job& job, const std::string& model_name,
                   std::set<std::string>& known) {
  known.insert({"model", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream",
                "stream_options", "user", "top_k", "min_p", "repetition_penalty", "ignore_eos"});
  GenerateOptions& o = job.options;
  if (const json* v = field(j, "model")) {
    if (!v->is_string()) throw bad("'model' must be a string, not " + type_of(*v), "model");
    if (v->get<std::string>() != model_name)
      throw ApiError(404, "invalid_request_error",
                     "the model '" + v->get<std::string>() +
                         "' does not exist; this server serves '" + model_name +
                         "' (GET /v1/models)",
                     "model", "model_not_found");
  }
  if (const json* v = field(j, "max_tokens")) o.max_new_tokens = positive_int(*v, "max_tokens");
  if (const json* v = field(j, "temperature")) {
    const double t = number_in(*v, "temperature", 0.0, 2.0, false);
    o.do_sample = t > 0.0;
    if (t > 0.0) o.temperature = static_cast<float>(t);
  }
  if (const json* v = field(j, "top_p"))
    o.top_p = static_cast<float>(number_in(*v, "top_p", 0.0, 1.0, true));
  if (const json* v = field(j, "min_p"))
    o.min_p = static_cast<float>(number_in(*v, "min_p", 0.0, 1.0, false));
  if (const json* v = field(j, "repetition_penalty"))
    o.repetition_penalty =
        static_cast<float>(number_in(*v, "repetition_penalty", 0.0, 100.0, true));
  if (const json* v = field(j, "top_k")) {
    if (!v->is_number_integer() || v->get<std::int64_t>() < 0)
      throw bad("'top_k' must be an integer of at least 0, not " + v->dump(), "top_k");
    o.top_k = static_cast<std::size_t>(v->get<std::int64_t>());
  }
  if (const json* v = field(j, "seed")) {
    if (!v->is_number_integer()) throw bad("'seed' must be an integer, not " + v->dump(), "seed");
    o.seed = v->is_number_unsigned() ? v->get<std::uint64_t>()
                                     : static_cast<std::uint64_t>(v->get<std::int64_t>());
  }
  if (const json* v = field(j, "stop")) {
    std::vector<std::string> stops;
    if (v->is_string()) {
      stops.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const json& s : *v) {
        if (!s.is_string())
          throw bad("'stop' must be a string or a list of strings; it holds " + s.dump(), "stop");
        stops.push_back(s.get<std::string>());
      }
    } else {
      throw bad("'stop' must be a string or a list of strings, not " + type_of(*v), "stop");
    }
    if (stops.size() > 64)
      throw bad("'stop' holds " + std::to_string(stops.size()) + " strings, more than 64", "stop");
    for (const std::string& s : stops) {
      if (s.empty()) throw bad("'stop' holds an empty string", "stop");
      if (s.size() > 1024) throw bad("'stop' holds a string of more than 1024 bytes", "stop");
    }
    if (!stops.empty()) o.stop = std::move(stops);
  }
  if (const json* v = field(j, "n")) {
    if (!v->is_number_integer() || v->get<std::int64_t>() != 1)
      throw bad("'n' must be 1 (one choice per request), not " + v->dump(), "n");
  }
  if (const json* v = field(j, "stream")) {
    if (!v->is_boolean()) throw bad("'stream' must be a boolean, not " + type_of(*v), "stream");
    job.stream = v->get<bool>();
  }
  if (const json* v = field(j, "stream_options")) {
    if (!job.stream)
      throw bad("'stream_options' is only allowed with \"stream\": true", "stream_options");
    if (!v->is_object())
      throw bad("'stream_options' must be an object, not " + type_of(*v), "stream_options");
    for (const auto& [k, x] : v->items()) {
      if (k != "include_usage")
        throw bad("'stream_options." + k + "' is not supported (only include_usage is)",
                  "stream_options." + k);
      if (!x.is_boolean())
        throw bad("'stream_options.include_usage' must be a boolean",
                  "stream_options.include_usage");
      job.include_usage = x.get<bool>();
    }
  }
  if (const json* v = field(j, "ignore_eos")) {
    if (!v->is_boolean())
      throw bad("'ignore_eos' must be a boolean, not " + type_of(*v), "ignore_eos");
    if (v->get<bool>()) o.eos_token_id = std::vector<Token>{};
  }
  if (const json* v = field(j, "user"))
    if (!v->is_string()) throw bad("'user' must be a string, not " + type_of(*v), "user");
}

// Fields of the API left at their neutral value are accepted; any other
// field, or one of these set to something else, is refused by name.
void refuse_unsupported(const json& j, const std::set<std::string>& known, const json& neutral) {
  std::vector<std::string> names;
  for (const auto& [k, v] : j.items()) {
    if (known.count(k) || v.is_null()) continue;
    auto it = neutral.find(k);
    if (it != neutral.end() && *it == v) continue;
    names.push_back(k);
  }
  if (names.empty()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
  throw bad("unsupported option" + std::string(names.size() > 1 ? "s " : " ") + list +
                " (supported: model, prompt or messages, max_tokens, temperature, top_p, seed, "
                "stop, n = 1, "
                "stream, stream_options, user, and the extensions top_k, min_p, "
                "repetition_penalty, ignore_eos)",
            names.front(), "unsupported_parameter");
}

// Prompt + max_tokens must fit the positions the model was trained for.
void check_context(const Job& job, const Model& model) {
  const PositionLimits limits = model.backend().position_limits();
  const std::size_t limit = limits.trained ? limits.trained : limits.hard;
  if (limit == 0) return;
  const std::size_t prompt = std::max<std::size_t>(job.prompt.size(), 1);
  if (prompt > limit)
    throw bad("the " + job.prompt_param + " is " + std::to_string(prompt) +
                  " tokens long, more than the model's " + std::to_string(limit) + "-token context",
              job.prompt_param, "context_length_exceeded");
  if (job.options.max_new_tokens && prompt + *job.options.max_new_tokens > limit)
    throw bad("'max_tokens' " + std::to_string(*job.options.max_new_tokens) + " plus the " +
                  std::to_string(prompt) + "-token " + job.prompt_param + " exceed the model's " +
                  std::to_string(limit) + "-token context",
              "max_tokens", "context_length_exceeded");
}

std::vector<Token> token_list(const json& a, const Model& model) {
  std::vector<Token> ids;
  const auto vocab = static_cast<std::int64_t>(model.backend().vocab_size());
  for (const json& t : a) {
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 || t.get<std::int64_t>() >= vocab)
      throw bad("'prompt' holds " + t.dump() + ", not a token id of the model (0 to " +
                    std::to_string(vocab - 1) + ")",
                "prompt");
    ids.push_back(static_cast<Token>(t.get<std::int64_t>()));
  }
  return ids;
}

}  // namespace

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_json(const ApiError& e) {
  json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}};
  return dump({{"error", std::move(err)}});
}

Job parse_completion(std::string_view body, const Model& model, const std::string& model_name,
                     const GenerateOptions& defaults) {
  const json j = parse_body(body);
  Job job;
  job.options = defaults;
  job.prompt_param = "prompt";
  std::set<std::string> known{"prompt"};
  common_fields(j, job, model_name, known);
  refuse_unsupported(j, known,
                     {{"echo", false},
                      {"best_of", 1},
                      {"frequency_penalty", 0},
                      {"presence_penalty", 0},
                      {"logit_bias", json::object()},
                      {"suffix", ""}});
  const json* p = field(j, "prompt");
  if (!p) throw bad("'prompt' is required", "prompt");
  const json* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1)
      throw bad("'prompt' holds " + std::to_string(p->size()) + " prompts; send one per request",
                "prompt");
    one = &p->front();
  }
  if (one->is_string()) {
    job.prompt = model.tokenizer().encode(one->get<std::string>(), {.parse_special = false});
  } else if (one->is_array() && !one->empty()) {
    job.prompt = token_list(*one, model);
  } else {
    throw bad("'prompt' must be a string, a list of one string, or a non-empty list of token ids",
              "prompt");
  }
  check_context(job, model);
  return job;
}

Job parse_chat(std::string_view body, const Model& model, const std::string& model_name,
               const GenerateOptions& defaults) {
  const json j = parse_body(body);
  Job job;
  job.options = defaults;
  job.chat = true;
  job.prompt_param = "messages";
  std::set<std::string> known{"messages", "max_completion_tokens"};
  common_fields(j, job, model_name, known);
  refuse_unsupported(j, known,
                     {{"logprobs", false},
                      {"frequency_penalty", 0},
                      {"presence_penalty", 0},
                      {"logit_bias", json::object()},
                      {"tools", json::array()},
                      {"tool_choice", "none"},
                      {"response_format", {{"type", "text"}}}});
  if (const json* v = field(j, "max_completion_tokens")) {
    if (j.contains("max_tokens") && !j["max_tokens"].is_null())
      throw bad("give one of 'max_tokens' and 'max_completion_tokens'", "max_completion_tokens");
    job.options.max_new_tokens = positive_int(*v, "max_completion_tokens");
  }
  const json* m = field(j, "messages");
  if (!m) throw bad("'messages' is required", "messages");
  if (!m->is_array() || m->empty())
    throw bad("'messages' must be a non-empty list of messages", "messages");
  std::vector<ChatMessage> messages;
  for (std::size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw bad("'" + at + "' must be an object, not " + type_of(msg), at);
    for (const auto& [k, v] : msg.items())
      if (k != "role" && k != "content" && k != "name")
        throw bad("'" + at + "." + k + "' is not supported (role, content, name are)",
                  at + "." + k);
    const json* role = field(msg, "role");
    if (!role || !role->is_string())
      throw bad("'" + at + ".role' must be a string (system, user, assistant, ...)", at + ".role");
    ChatMessage cm{role->get<std::string>(), ""};
    if (const json* c = field(msg, "content")) {
      if (c->is_string()) {
        cm.content = c->get<std::string>();
      } else if (c->is_array()) {
        for (std::size_t k = 0; k < c->size(); ++k) {
          const json& part = (*c)[k];
          const std::string pat = at + ".content[" + std::to_string(k) + "]";
          if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
              !part["text"].is_string())
            throw bad("'" + pat + "' must be a text part {\"type\": \"text\", \"text\": ...}", pat);
          cm.content += part["text"].get<std::string>();
        }
      } else {
        throw bad(
            "'" + at + ".content' must be a string or a list of text parts, not " + type_of(*c),
            at + ".content");
      }
    }
    messages.push_back(std::move(cm));
  }
  if (!model.has_chat_template())
    throw bad(
        "the model has no chat template, so /v1/chat/completions cannot render 'messages' "
        "(use /v1/completions, or start the server with a template)",
        "messages");
  try {
    job.prompt = model.encode_chat(messages);
  } catch (const Error& e) {
    throw bad(std::string("the chat template rejected 'messages': ") + e.what(), "messages");
  }
  check_context(job, model);
  return job;
}

}  // namespace assistgen::server

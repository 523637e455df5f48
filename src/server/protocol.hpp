// Private to the server (src/server/): the OpenAI request bodies parsed and
// checked into a Job for TextBatchEngine, and the OpenAI error JSON. Every
// field is checked here, so a bad request is a 4xx naming the field before
// anything reaches the engine.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "assistgen/generate.hpp"

namespace assistgen::server {

/// An HTTP error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  ApiError(int status_, std::string type_, std::string message_, std::string param_,
           std::string code_, int retry_after_ = 0)
      : status(status_),
        type(std::move(type_)),
        message(std::move(message_)),
        param(std::move(param_)),
        code(std::move(code_)),
        retry_after(retry_after_) {}
  int status;
  std::string type;     ///< invalid_request_error, server_error, ...
  std::string message;  ///< says what is wrong, naming the field
  std::string param;    ///< the field at fault; empty: null
  std::string code;     ///< OpenAI's code (model_not_found, ...); empty: null
  int retry_after = 0;  ///< > 0: a Retry-After header (seconds)
};

/// A checked generation request.
struct Job {
  bool chat = false;           ///< /v1/chat/completions
  bool stream = false;         ///< server-sent events
  bool include_usage = false;  ///< stream_options.include_usage
  std::vector<Token> prompt;   ///< encoded prompt (or rendered conversation)
  std::string prompt_param;    ///< "prompt" or "messages", for errors about its length
  GenerateOptions options;     ///< the request's overrides of the model's defaults
};

/// The error's JSON text.
std::string error_json(const ApiError& e);
/// JSON text with invalid UTF-8 replaced (U+FFFD), never throwing.
std::string dump(const nlohmann::json& j);

/// Parses a /v1/completions body for `model` (served as `model_name`),
/// its options set over `defaults` (ServerOptions::defaults);
/// ApiError (400, or 404 for another model name) naming the field at fault.
Job parse_completion(std::string_view body, const Model& model, const std::string& model_name,
                     const GenerateOptions& defaults);
/// Parses a /v1/chat/completions body; the messages are rendered with the
/// model's chat template (400 when it has none, or when it rejects them).
Job parse_chat(std::string_view body, const Model& model, const std::string& model_name,
               const GenerateOptions& defaults);

}  // namespace assistgen::server

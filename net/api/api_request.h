// The OpenAI-compatible API's requests (`bouquet api`): the JSON bodies of POST /v1/completions and
// POST /v1/chat/completions, validated into one plain struct, and OpenAI's error object.
//
// Promises:
// - parse_completion_request / parse_chat_request either return a request whose every field is in
//   range, or throw ApiError with the HTTP status and OpenAI's error JSON (type, code, and the name
//   of the offending field in `param`); they never read the model or the swarm.
// - Fields OpenAI defines but this server cannot honour (n > 1, best_of > 1, logprobs, echo,
//   tools) are refused by name rather than silently ignored; fields that change nothing here
//   (user, stream_options without include_usage, logit_bias {}) are accepted.
// - Defaults are OpenAI's: temperature 1, top_p 1, completions max_tokens 16, chat max_tokens the
//   rest of the context (max_tokens = 0 below means exactly that).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::net::api {

// An error as OpenAI's API reports it: HTTP status plus {"error": {message, type, param, code}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, std::string code, std::string message, std::string param = {})
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        code_(std::move(code)),
        param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }
  // {"error": {"message", "type", "param" (null when none), "code" (null when none)}}
  std::string json() const;

 private:
  int status_;
  std::string type_, code_, param_;
};

// 400 invalid_request_error naming `param`.
ApiError invalid_request(std::string message, std::string param = {}, std::string code = {});

struct ChatMessage {
  std::string role;  // system, developer, user, assistant
  std::string content;
};

struct CompletionRequest {
  bool chat = false;
  std::string model;
  // Completions: the prompt, as text or as token ids (exactly one is set).
  std::optional<std::string> prompt_text;
  std::vector<int64_t> prompt_ids;
  std::vector<ChatMessage> messages;  // chat
  int64_t max_tokens = 0;             // 0: the rest of the model's context
  double temperature = 1.0;           // 0: greedy
  double top_p = 1.0;
  std::vector<std::string> stop;  // up to 4 texts, none empty
  std::optional<uint64_t> seed;
  double presence_penalty = 0;   // [-2, 2]
  double frequency_penalty = 0;  // [-2, 2]
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
};

// Throws ApiError (400) for a body that is not a JSON object or any field out of range.
CompletionRequest parse_completion_request(std::string_view body);
CompletionRequest parse_chat_request(std::string_view body);

}  // namespace bouquet::net::api

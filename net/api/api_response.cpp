#include "net/api/api_response.h"

#include <nlohmann/json.hpp>

namespace bouquet::net::api {
namespace {

using nlohmann::json;

// Model output may hold invalid UTF-8 (a token cut inside a character): replaced, never thrown on.
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

json head_json(const ResponseHead& head, const char* object) {
  return {{"id", head.id},
          {"object", object},
          {"created", head.created},
          {"model", head.model},
          {"system_fingerprint", nullptr}};
}

}  // namespace

std::string completion_json(const ResponseHead& head, const std::string& text, const std::string& finish_reason,
                            const Usage& usage) {
  json body = head_json(head, head.chat ? "chat.completion" : "text_completion");
  json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (head.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  body["choices"] = json::array({choice});
  body["usage"] = usage_json(usage);
  return dump(body);
}

std::string chunk_json(const ResponseHead& head, const std::string& text,
                       const std::optional<std::string>& finish_reason, bool role_chunk) {
  json body = head_json(head, head.chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason ? json(*finish_reason) : json(nullptr);
  if (head.chat) {
    json delta = json::object();
    if (role_chunk) delta = {{"role", "assistant"}, {"content", ""}};
    if (!text.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  body["choices"] = json::array({choice});
  return dump(body);
}

std::string usage_chunk_json(const ResponseHead& head, const Usage& usage) {
  json body = head_json(head, head.chat ? "chat.completion.chunk" : "text_completion");
  body["choices"] = json::array();
  body["usage"] = usage_json(usage);
  return dump(body);
}

std::string model_json(const std::string& model, int64_t created) {
  return dump({{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "bouquet"}});
}

std::string models_json(const std::string& model, int64_t created) {
  return dump({{"object", "list"}, {"data", json::array({json::parse(model_json(model, created))})}});
}

}  // namespace bouquet::net::api

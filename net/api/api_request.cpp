#include "net/api/api_request.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

namespace bouquet::net::api {
namespace {

using nlohmann::json;

json parse_object(std::string_view body) {
  json value = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    throw invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload.)");
  }
  if (!value.is_object()) throw invalid_request("the request body must be a JSON object");
  return value;
}

// The field when present and not null.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json& body, const char* name, double fallback, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw invalid_request(fmt::format("'{}' must be a number", name), name);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    throw invalid_request(fmt::format("{} is not a valid '{}': must be in [{:g}, {:g}]", v->dump(), name, lo, hi),
                          name);
  }
  return x;
}

int64_t integer_in(const json& body, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer()) throw invalid_request(fmt::format("'{}' must be an integer", name), name);
  bool ok = false;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    ok = u <= static_cast<uint64_t>(hi) && (lo <= 0 || u >= static_cast<uint64_t>(lo));
  } else {
    const int64_t s = v->get<int64_t>();
    ok = s >= lo && s <= hi;
  }
  if (!ok) {
    throw invalid_request(fmt::format("{} is not a valid '{}': must be in [{}, {}]", v->dump(), name, lo, hi), name);
  }
  return v->get<int64_t>();
}

bool flag(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return false;
  if (!v->is_boolean()) throw invalid_request(fmt::format("'{}' must be true or false", name), name);
  return v->get<bool>();
}

void refuse_unsupported(const json& body) {
  if (integer_in(body, "n", 1, 1, 128) != 1) throw invalid_request("only n = 1 is supported", "n");
  if (integer_in(body, "best_of", 1, 1, 128) != 1) throw invalid_request("only best_of = 1 is supported", "best_of");
  if (const json* v = field(body, "logprobs"); v && !(v->is_boolean() && !v->get<bool>())) {
    throw invalid_request("logprobs are not supported", "logprobs");
  }
  if (flag(body, "echo")) throw invalid_request("echo is not supported", "echo");
  for (const char* name : {"tools", "functions", "suffix"}) {
    if (field(body, name)) throw invalid_request(fmt::format("'{}' is not supported", name), name);
  }
  if (const json* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty())) {
    throw invalid_request("logit_bias is not supported", "logit_bias");
  }
}

// The fields both endpoints share.
void parse_common(const json& body, CompletionRequest& out, int64_t default_max_tokens) {
  const json* model = field(body, "model");
  if (!model) throw invalid_request("you must provide a model parameter", "model");
  if (!model->is_string()) throw invalid_request("'model' must be a string", "model");
  out.model = model->get<std::string>();
  refuse_unsupported(body);
  constexpr int64_t kMaxTokens = int64_t{1} << 24;
  out.max_tokens = integer_in(body, "max_tokens", default_max_tokens, 1, kMaxTokens);
  if (field(body, "max_completion_tokens"))
    out.max_tokens = integer_in(body, "max_completion_tokens", 0, 1, kMaxTokens);
  out.temperature = number_in(body, "temperature", 1.0, 0.0, 2.0);
  out.top_p = number_in(body, "top_p", 1.0, 0.0, 1.0);
  if (out.top_p == 0.0) out.top_p = 1e-9;  // OpenAI accepts 0: only the best token
  out.presence_penalty = number_in(body, "presence_penalty", 0.0, -2.0, 2.0);
  out.frequency_penalty = number_in(body, "frequency_penalty", 0.0, -2.0, 2.0);
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) throw invalid_request("'seed' must be an integer", "seed");
    out.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      out.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && stop->size() <= 4) {
      for (const json& s : *stop) {
        if (!s.is_string()) throw invalid_request("'stop' must be a string or an array of up to 4 strings", "stop");
        out.stop.push_back(s.get<std::string>());
      }
    } else {
      throw invalid_request("'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const std::string& s : out.stop) {
      if (s.empty()) throw invalid_request("a 'stop' sequence must not be empty", "stop");
    }
  }
  out.stream = flag(body, "stream");
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) throw invalid_request("'stream_options' must be an object", "stream_options");
    if (!out.stream) throw invalid_request("'stream_options' is only allowed when 'stream' is true", "stream_options");
    out.include_usage = flag(*options, "include_usage");
  }
}

std::string message_content(const json& content, size_t index) {
  const std::string param = fmt::format("messages.[{}].content", index);
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {  // [{"type": "text", "text": "..."}]
    std::string text;
    for (const json& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        throw invalid_request("only text content parts are supported", param);
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw invalid_request("a message's content must be a string or an array of text parts", param);
}

}  // namespace

std::string ApiError::json() const {
  nlohmann::json error = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) error["param"] = param_;
  if (!code_.empty()) error["code"] = code_;
  return nlohmann::json{{"error", error}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return ApiError(400, "invalid_request_error", std::move(code), std::move(message), std::move(param));
}

CompletionRequest parse_completion_request(std::string_view body_text) {
  const json body = parse_object(body_text);
  CompletionRequest out;
  parse_common(body, out, 16);
  const json* prompt = field(body, "prompt");
  if (!prompt) throw invalid_request("you must provide a prompt parameter", "prompt");
  // A string, a batch of one string, token ids, or a batch of one list of token ids.
  const json* one = prompt;
  if (prompt->is_array() && prompt->size() == 1 && ((*prompt)[0].is_string() || (*prompt)[0].is_array())) {
    one = &(*prompt)[0];
  }
  if (one->is_string()) {
    out.prompt_text = one->get<std::string>();
  } else if (one->is_array() && !one->empty()) {
    for (const json& id : *one) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        throw invalid_request(
            "'prompt' must be a string, or token ids (integers >= 0); batches of several prompts "
            "are not supported",
            "prompt");
      }
      out.prompt_ids.push_back(id.get<int64_t>());
    }
  } else {
    throw invalid_request("'prompt' must be a non-empty string or array of token ids", "prompt");
  }
  return out;
}

CompletionRequest parse_chat_request(std::string_view body_text) {
  const json body = parse_object(body_text);
  CompletionRequest out;
  out.chat = true;
  parse_common(body, out, 0);
  const json* messages = field(body, "messages");
  if (!messages) throw invalid_request("you must provide a messages parameter", "messages");
  if (!messages->is_array() || messages->empty()) {
    throw invalid_request("'messages' must be a non-empty array", "messages");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    if (!m.is_object()) throw invalid_request("each message must be an object", fmt::format("messages.[{}]", i));
    const std::string role = m.contains("role") && m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (role != "system" && role != "developer" && role != "user" && role != "assistant") {
      throw invalid_request(fmt::format("'{}' is not one of system, developer, user, assistant", role),
                            fmt::format("messages.[{}].role", i));
    }
    if (!m.contains("content") || m["content"].is_null()) {
      throw invalid_request("a message needs content", fmt::format("messages.[{}].content", i));
    }
    out.messages.push_back({role, message_content(m["content"], i)});
  }
  return out;
}

}  // namespace bouquet::net::api

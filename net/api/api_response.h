// The JSON bodies the OpenAI-compatible API answers with (its field names are OpenAI's, which
// every client library reads): a whole completion, one streamed chunk, the model list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace bouquet::net::api {

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// What every body of one request shares.
struct ResponseHead {
  bool chat = false;
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// A whole answer: text_completion or chat.completion, with usage.
std::string completion_json(const ResponseHead& head, const std::string& text, const std::string& finish_reason,
                            const Usage& usage);
// One chunk of a stream. Chat: `role_chunk` gives the first chunk's delta {"role": "assistant",
// "content": ""}; a finish reason gives the last chunk's (an empty delta for chat).
std::string chunk_json(const ResponseHead& head, const std::string& text,
                       const std::optional<std::string>& finish_reason, bool role_chunk = false);
// The extra last chunk of stream_options.include_usage: no choices, the usage.
std::string usage_chunk_json(const ResponseHead& head, const Usage& usage);
std::string model_json(const std::string& model, int64_t created);
std::string models_json(const std::string& model, int64_t created);

}  // namespace bouquet::net::api

// Server-sent events as OpenAI's streaming API frames them: each chunk one `data: <json>` event,
// the stream ended by `data: [DONE]`. A JSON payload never holds a raw newline (it is escaped), so
// one `data:` line per event is enough; sse_event still splits any other text on its newlines,
// as the SSE format requires, so a client can never see an event end early.
#pragma once

#include <string>
#include <string_view>

namespace bouquet::net::api {

// "data: <line 1>\ndata: <line 2>\n\n" (one data line per line of `payload`).
std::string sse_event(std::string_view payload);
// "data: [DONE]\n\n"
std::string sse_done();

}  // namespace bouquet::net::api

#include "net/api/sse.h"

namespace bouquet::net::api {

std::string sse_event(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  size_t start = 0;
  while (true) {
    // A CR, an LF or a CRLF ends a line in SSE; each one starts a new data field.
    const size_t end = payload.find_first_of("\r\n", start);
    out += "data: ";
    out += payload.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    out += '\n';
    if (end == std::string_view::npos) break;
    start = end + (payload[end] == '\r' && end + 1 < payload.size() && payload[end + 1] == '\n' ? 2 : 1);
  }
  out += '\n';
  return out;
}

std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace bouquet::net::api

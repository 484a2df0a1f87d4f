#include "core/error.h"

#include <fmt/core.h>

namespace bouquet::core {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::bad_request:
      return "bad_request";
    case ErrorCode::unknown_session:
      return "unknown_session";
    case ErrorCode::span_not_served:
      return "span_not_served";
    case ErrorCode::model_mismatch:
      return "model_mismatch";
    case ErrorCode::cache_full:
      return "cache_full";
    case ErrorCode::bad_position:
      return "bad_position";
    case ErrorCode::unknown_adapter:
      return "unknown_adapter";
    case ErrorCode::session_busy:
      return "session_busy";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::peer_unreachable:
      return "peer_unreachable";
    case ErrorCode::no_route:
      return "no_route";
    case ErrorCode::compute_failed:
      return "compute_failed";
    case ErrorCode::session_closed:
      return "session_closed";
    case ErrorCode::protocol:
      return "protocol";
    case ErrorCode::bad_reply:
      return "bad_reply";
    case ErrorCode::over_limit:
      return "over_limit";
    case ErrorCode::overloaded:
      return "overloaded";
    case ErrorCode::identity_refused:
      return "identity_refused";
  }
  return "unknown_error";
}

bool is_known_error_code(uint16_t value) { return value >= 1 && value <= kLastErrorCode; }

std::string Error::to_string() const { return fmt::format("{}: {}", core::to_string(code), message); }

}  // namespace bouquet::core

// Typed errors for expected failures: a full cache, a vanished peer, a bad request from the network.
// Programmer errors use BOUQUET_CHECK instead. An ErrorCode travels on the wire (ErrorReply), so its
// numeric values are frozen: add new codes at the end, never renumber or rename one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/check.h"

namespace bouquet::core {

enum class ErrorCode : uint16_t {
  bad_request = 1,        // malformed or inconsistent request (wrong shape, bad field value)
  unknown_session = 2,    // no open session with that id for this peer
  span_not_served = 3,    // the server does not hold the requested blocks
  model_mismatch = 4,     // a different model (name or fingerprint) than the server's
  cache_full = 5,         // no cache room within the client's wait timeout
  bad_position = 6,       // a step's start position skips past the cache or exceeds max length
  unknown_adapter = 7,    // the server does not hold the requested adapter
  session_busy = 8,       // a step arrived while the session's previous step is unfinished
  timeout = 9,            // no reply within the deadline
  peer_unreachable = 10,  // the transport lost the peer
  no_route = 11,          // no chain of servers covers the blocks
  compute_failed = 12,    // the block computation itself failed
  session_closed = 13,    // the session was closed (idle timeout, shutdown)
  protocol = 14,          // undecodable bytes, unexpected message
  bad_reply = 15,         // a reply that does not fit the request (shape, step id)
  over_limit = 16,        // one request beyond a limit the server announces (InfoReply): split it
  overloaded = 17,        // the client's quota or the server's queue is full now: retry later or elsewhere
  identity_refused = 18,  // the server did not prove the identity its record names (identity_proof.h)
};

inline constexpr uint16_t kLastErrorCode = 18;

// Stable snake_case name, as in the enum ("cache_full").
std::string_view to_string(ErrorCode code);
bool is_known_error_code(uint16_t value);

struct Error {
  ErrorCode code = ErrorCode::bad_request;
  std::string message;  // one line naming the peer / session / field concerned

  friend bool operator==(const Error&, const Error&) = default;
  // "cache_full: ..." for logs and for the one line a user sees.
  std::string to_string() const;
};

// A value or a typed error. Small on purpose: C++20 has no std::expected.
template <class T, class E = Error>
class Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(E error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    BOUQUET_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(state_);
  }
  const T& value() const& {
    BOUQUET_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(state_);
  }
  T&& value() && {
    BOUQUET_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(std::move(state_));
  }
  const E& error() const {
    BOUQUET_CHECK(!ok(), "Result::error() on a value");
    return std::get<1>(state_);
  }

 private:
  std::variant<T, E> state_;
};

}  // namespace bouquet::core

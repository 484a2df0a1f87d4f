// Frames on a TCP stream: how one core message body (core/wire.h's encode()) travels between
// client and server. Client and server both use this file and nothing else to put messages on
// the wire, so their bytes cannot disagree.
//
// Frame layout (frame version 1), little-endian:
//   offset 0   2 bytes  magic "BQ" (0x42 0x51)
//   offset 2   u8       frame version (kFrameVersion)
//   offset 3   u8       flags, reserved: must be 0
//   offset 4   u64      body length N in bytes
//   offset 12  N bytes  body: encode(message) = u16 wire version | u8 message type | fields
//
// FrameParser promises: it checks magic, version, flags and N <= max_frame_bytes before it
// allocates anything for the body, so a length prefix of 2^63 costs nothing; garbage never
// crashes it. The body buffer then grows with the bytes that arrive (at most twice what came, and
// never past N), so a header that claims the largest body costs what the peer really sent. A frame error (bad magic,
// version, flags, over-long length) means the stream can no longer be trusted: the connection answers it with an
// ErrorReply and closes. A body that does not decode is the peer's mistake inside an intact stream: answered,
// connection kept.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/messages.h"
#include "core/wire.h"

namespace bouquet::net {

inline constexpr uint8_t kFrameMagic0 = 0x42;  // 'B'
inline constexpr uint8_t kFrameMagic1 = 0x51;  // 'Q'
inline constexpr uint8_t kFrameVersion = 1;
using core::kFrameHeaderBytes;  // 12: the layout above
// 64 MiB: a 4096-token prefill of a 4096-wide model in float32 fits in one frame.
inline constexpr uint64_t kDefaultMaxFrameBytes = uint64_t{64} << 20;

struct FrameLimits {
  uint64_t max_frame_bytes = kDefaultMaxFrameBytes;  // body bytes
  core::WireLimits wire;
};

// The 12 header bytes of a frame whose body is `body_bytes` long.
std::vector<uint8_t> frame_header(uint64_t body_bytes);
// Header and encode(message) in one buffer, ready to write.
std::vector<uint8_t> encode_frame(const core::Message& message);

// Incremental parser of a byte stream into frame bodies. Feed it whatever the socket returned;
// take complete bodies with next(). After an error it stays failed.
class FrameParser {
 public:
  explicit FrameParser(uint64_t max_frame_bytes = kDefaultMaxFrameBytes) : max_frame_bytes_(max_frame_bytes) {}

  // Consumes all of `bytes`; complete bodies queue up for next().
  void feed(std::span<const uint8_t> bytes);
  // The next complete frame body, if any.
  std::optional<std::vector<uint8_t>> next();

  bool failed() const { return error_.has_value(); }
  // Why the stream is unusable (a protocol error naming the offending header field).
  const core::Error& error() const { return *error_; }
  // True while a frame has begun but not ended (a peer that stops here has sent a half frame).
  bool inside_frame() const { return header_fill_ > 0 || body_.has_value(); }
  // "12 of 100 body bytes" / "5 of 12 header bytes": how far the unfinished frame got.
  std::string progress() const;
  // Bytes held for the unfinished frame's body (capacity, not the length its header claims).
  size_t buffered_bytes() const { return body_ ? body_->capacity() : 0; }

 private:
  void parse_header();
  // Makes room for `needed` body bytes.
  void grow_body(uint64_t needed);

  uint64_t max_frame_bytes_;
  uint8_t header_[kFrameHeaderBytes] = {};
  size_t header_fill_ = 0;
  std::optional<std::vector<uint8_t>> body_;  // begun once the header passed every check
  uint64_t body_length_ = 0;                  // what the header claims; body_ grows towards it
  std::vector<std::vector<uint8_t>> ready_;
  size_t ready_at_ = 0;
  std::optional<core::Error> error_;
};

// Decodes a frame body, with the limits of `limits`; a DecodeError becomes the protocol Error an
// ErrorReply carries.
core::Result<core::Message> decode_body(std::span<const uint8_t> body, const FrameLimits& limits);

// Most new tokens of `batch` sequences of width `hidden` one step may carry so that its frame
// (and the reply, which has the same shape) stays under max_frame_bytes at float32, the widest
// wire format. Long prefills and replays are split into steps of at most this many tokens.
uint32_t max_step_tokens(const FrameLimits& limits, uint32_t batch, uint32_t hidden);

}  // namespace bouquet::net

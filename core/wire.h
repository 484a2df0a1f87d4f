// The canonical byte encoding of a Message: the body of a wire frame. The net layer adds its
// framing (length prefix) around it and reuses this unchanged; encoded_size() is its exact length.
//
// Layout, little-endian throughout:
//   u16 wire version | u8 MessageType | the message's fields in declaration order
// The version is the lowest one that carries the message (wire_version_of, messages.h): a message
// without the fields versions 3 and 4 added is written as version 2, so older peers read it. A decoder
// reads every version from kWireVersionMin to kWireVersion, fields as of the message's version.
// Field encodings: integers fixed-width; double as its IEEE-754 bits in a u64; bool/enum as u8
// (u16 for ErrorCode); string = u32 byte count + UTF-8 bytes; list = u32 count + items;
// optional = u8 0/1 + value; BlockSpan = u32 begin, u32 end; PeerId = u64;
// Activation = u8 dtype, u8 compression, u8 rank, rank x u32 dims, then exactly
// packed_size(compression, dtype, product of dims) payload bytes (compression.h), no length field.
//
// Decoding never trusts a count: every string length, list count and tensor size is checked
// against WireLimits and against the bytes actually left before anything is allocated. Garbage
// gives a DecodeError naming the field, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/messages.h"

namespace bouquet::core {

// 2: InfoReply announces the server's limits; error codes over_limit and overloaded.
// 3: identity challenge: identity_nonce in open / forward / backward, identity_proof in their
//    replies (messages.h, identity_proof.h).
// 4: the same challenge in InfoRequest / InfoReply, so a client pins each address to the key that
//    proved itself there (address_pins.h).
inline constexpr uint16_t kWireVersion = 4;
inline constexpr uint16_t kWireVersionMin = 2;      // the oldest version this build still reads
inline constexpr uint64_t kMessageHeaderBytes = 3;  // version + type
// The transport's frame around each body (net/rpc/frame.h: magic, frame version, flags, body
// length): part of what crosses the wire, so the simulator charges it too.
inline constexpr uint64_t kFrameHeaderBytes = 12;

// Bytes on the wire for one message: the frame header and the body.
inline uint64_t wire_bytes(const Message& message) { return kFrameHeaderBytes + encoded_size(message); }

struct WireLimits {
  uint32_t max_string_bytes = 4096;
  uint32_t max_list_items = 1024;
  uint32_t max_rank = 4;
  uint64_t max_tensor_elements = uint64_t{1} << 28;  // 1 GiB of float32
};

enum class DecodeErrorCode : uint8_t {
  truncated = 1,        // the bytes end inside a field
  bad_version = 2,      // a wire version this build does not speak
  unknown_message = 3,  // a MessageType this version does not define
  over_limit = 4,       // a length, count, rank or element count beyond WireLimits
  bad_value = 5,        // an enum or flag value outside its range
  trailing_bytes = 6,   // bytes left after the message
};

std::string_view to_string(DecodeErrorCode code);

struct DecodeError {
  DecodeErrorCode code = DecodeErrorCode::truncated;
  std::string message;  // names the message type and field, e.g. "step.hidden_states: ..."

  // As a protocol Error, for an ErrorReply to the peer that sent the bytes.
  Error to_error() const;
};

// The canonical encoding. Every activation in the message must carry data (a simulated handle
// cannot be encoded: a programmer error).
std::vector<uint8_t> encode(const Message& message);
// Appends the encoding to `out` (lets a driver write into a frame buffer).
void encode_into(const Message& message, std::vector<uint8_t>& out);

// Decodes exactly one message occupying all of `bytes`. Activations come back with
// PackedActivationData holding their payload as it was on the wire.
Result<Message, DecodeError> decode(std::span<const uint8_t> bytes, const WireLimits& limits = {});

}  // namespace bouquet::core

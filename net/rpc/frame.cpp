#include "net/rpc/frame.h"

#include <fmt/core.h>
#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace bouquet::net {

using core::Error;
using core::ErrorCode;

std::vector<uint8_t> frame_header(uint64_t body_bytes) {
  std::vector<uint8_t> header{kFrameMagic0, kFrameMagic1, kFrameVersion, 0};
  for (int i = 0; i < 8; ++i) header.push_back(static_cast<uint8_t>(body_bytes >> (8 * i)));
  return header;
}

std::vector<uint8_t> encode_frame(const core::Message& message) {
  const uint64_t body = core::encoded_size(message);
  std::vector<uint8_t> frame = frame_header(body);
  frame.reserve(kFrameHeaderBytes + body);
  core::encode_into(message, frame);
  BOUQUET_CHECK(frame.size() == kFrameHeaderBytes + body, "encode() wrote other than encoded_size()");
  return frame;
}

void FrameParser::feed(std::span<const uint8_t> bytes) {
  size_t at = 0;
  while (at < bytes.size() && !failed()) {
    if (!body_) {
      const size_t take = std::min(bytes.size() - at, kFrameHeaderBytes - header_fill_);
      std::memcpy(header_ + header_fill_, bytes.data() + at, take);
      header_fill_ += take;
      at += take;
      if (header_fill_ == kFrameHeaderBytes) parse_header();
      continue;
    }
    const uint64_t take = std::min<uint64_t>(bytes.size() - at, body_length_ - body_->size());
    grow_body(body_->size() + take);
    body_->insert(body_->end(), bytes.data() + at, bytes.data() + at + take);
    at += take;
    if (body_->size() == body_length_) {
      ready_.push_back(std::move(*body_));
      body_.reset();
      body_length_ = 0;
    }
  }
}

void FrameParser::parse_header() {
  header_fill_ = 0;
  if (header_[0] != kFrameMagic0 || header_[1] != kFrameMagic1) {
    error_ = Error{ErrorCode::protocol,
                   fmt::format("frame: bad magic 0x{:02x}{:02x} (expected 0x4251, \"BQ\")", header_[0], header_[1])};
    return;
  }
  if (header_[2] != kFrameVersion) {
    error_ =
        Error{ErrorCode::protocol, fmt::format("frame: version {} (this build speaks {})", header_[2], kFrameVersion)};
    return;
  }
  if (header_[3] != 0) {
    error_ = Error{ErrorCode::protocol, fmt::format("frame: flags 0x{:02x} (must be 0)", header_[3])};
    return;
  }
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= static_cast<uint64_t>(header_[4 + i]) << (8 * i);
  if (length > max_frame_bytes_) {
    error_ = Error{ErrorCode::protocol,
                   fmt::format("frame: body of {} bytes exceeds the limit of {} bytes", length, max_frame_bytes_)};
    return;
  }
  if (length < core::kMessageHeaderBytes) {
    error_ =
        Error{ErrorCode::protocol, fmt::format("frame: body of {} bytes is shorter than a message header", length)};
    return;
  }
  // Nothing is reserved for the claimed length: a peer that sends a header and stalls holds
  // only what it sent (grow_body), not up to max_frame_bytes of zeroed memory.
  body_.emplace();
  body_length_ = length;
}

void FrameParser::grow_body(uint64_t needed) {
  if (needed <= body_->capacity()) return;
  // Doubling keeps the copies linear in the body's size; the claim caps the last step.
  constexpr uint64_t kFirstChunkBytes = 64 * 1024;
  const uint64_t doubled = std::max<uint64_t>(kFirstChunkBytes, 2 * uint64_t{body_->capacity()});
  body_->reserve(std::min(body_length_, std::max(needed, doubled)));
}

std::optional<std::vector<uint8_t>> FrameParser::next() {
  if (ready_at_ == ready_.size()) {
    ready_.clear();
    ready_at_ = 0;
    return std::nullopt;
  }
  return std::move(ready_[ready_at_++]);
}

std::string FrameParser::progress() const {
  if (body_) return fmt::format("{} of {} body bytes", body_->size(), body_length_);
  return fmt::format("{} of {} header bytes", header_fill_, kFrameHeaderBytes);
}

core::Result<core::Message> decode_body(std::span<const uint8_t> body, const FrameLimits& limits) {
  auto decoded = core::decode(body, limits.wire);
  if (!decoded.ok()) return decoded.error().to_error();
  return std::move(decoded).value();
}

uint32_t max_step_tokens(const FrameLimits& limits, uint32_t batch, uint32_t hidden) {
  BOUQUET_CHECK(batch > 0 && hidden > 0, "max_step_tokens needs a batch and a hidden size");
  // Room for everything but the tensor payload: ids, positions, tensor header, optional fields.
  constexpr uint64_t kOverheadBytes = 4096;
  BOUQUET_CHECK(limits.max_frame_bytes > kOverheadBytes, "frame limit too small for any step");
  const uint64_t per_token = uint64_t{batch} * hidden;
  const uint64_t by_bytes = (limits.max_frame_bytes - kOverheadBytes) / (per_token * 4);
  const uint64_t by_elements = limits.wire.max_tensor_elements / per_token;
  const uint64_t tokens = std::min({by_bytes, by_elements, uint64_t{UINT32_MAX}});
  BOUQUET_CHECK(tokens > 0, "one token of this batch does not fit in a frame");
  return static_cast<uint32_t>(tokens);
}

}  // namespace bouquet::net

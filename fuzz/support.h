// Shared by the libFuzzer harnesses: fuzzer bytes -> protocol values (small ranges, so that ids
// collide and sessions meet each other's messages).
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <vector>

#include <optional>

#include "core/activation.h"
#include "core/messages.h"
#include "core/wire.h"

namespace bouquet::fuzz {

inline core::Compression compression(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      return core::Compression::none;
    case 1:
      return core::Compression::float16;
    default:
      return core::Compression::int8_blockwise;
  }
}

// [batch, tokens, hidden] with fuzzed values (NaN and infinities included), dims sometimes wrong.
inline core::Activation activation(FuzzedDataProvider& in, uint32_t batch, uint32_t tokens, uint32_t hidden) {
  if (in.ConsumeBool()) {
    batch = in.ConsumeIntegralInRange<uint32_t>(0, 3);
    tokens = in.ConsumeIntegralInRange<uint32_t>(0, 5);
    hidden = in.ConsumeIntegralInRange<uint32_t>(0, 6);
  }
  std::vector<float> values(size_t{batch} * tokens * hidden);
  for (float& v : values) v = in.ConsumeFloatingPoint<float>();
  core::Activation a = core::make_activation({batch, tokens, hidden}, values);
  a.compression = compression(in);
  return a;
}

inline core::BlockSpan span(FuzzedDataProvider& in, uint32_t blocks) {
  const uint32_t begin = in.ConsumeIntegralInRange<uint32_t>(0, blocks);
  const uint32_t end = in.ConsumeIntegralInRange<uint32_t>(0, blocks + 1);
  return core::BlockSpan{begin, end};
}

// What a peer can really make a component see: the message as the wire decoder returns it after
// encoding, or nothing when the decoder refuses it.
inline std::optional<core::Message> through_wire(const core::Message& message) {
  auto decoded = core::decode(core::encode(message));
  if (!decoded.ok()) return std::nullopt;
  return std::move(decoded).value();
}

}  // namespace bouquet::fuzz

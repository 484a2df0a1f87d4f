// The wire decoder on arbitrary bytes: it returns a message or a DecodeError, never crashes,
// and a message it accepts encodes back to bytes it decodes to the same message.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet::core;
  auto decoded = decode(std::span<const uint8_t>(data, size));
  if (!decoded.ok()) return 0;
  const std::vector<uint8_t> again = encode(decoded.value());
  auto redecoded = decode(again);
  if (!redecoded.ok() || encode(redecoded.value()) != again) std::abort();  // not a fixed point
  return 0;
}

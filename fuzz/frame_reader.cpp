// The frame reader on an arbitrary byte stream cut into arbitrary pieces, with an arbitrary frame
// limit: it yields bodies or a protocol error, never holds more than the bytes that arrived (plus
// doubling slack), and every body it yields goes to the decoder.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>

#include "core/wire.h"
#include "net/rpc/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet;
  FuzzedDataProvider in(data, size);
  net::FrameParser parser(in.ConsumeIntegralInRange<uint64_t>(1, uint64_t{1} << 26));
  size_t fed = 0;
  while (in.remaining_bytes() > 0 && !parser.failed()) {
    const std::vector<uint8_t> piece = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(1, 64));
    parser.feed(piece);
    fed += piece.size();
    // Allocated for bytes never sent: the reader may hold its first 64 KiB chunk, then doubles.
    if (parser.buffered_bytes() > 2 * fed + 64 * 1024) std::abort();
    while (auto body = parser.next()) (void)core::decode(*body);
  }
  return 0;
}

// A DHT record as anyone may publish it: decoded to a record or refused with a reason, never UB;
// a record it accepts survives encode -> decode unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "net/dht/dht_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet::net;
  const auto decoded = decode_dht_record(std::string(reinterpret_cast<const char*>(data), size));
  if (const auto* record = std::get_if<DhtRecord>(&decoded)) {
    const std::string again = encode_dht_record(*record);
    const auto redecoded = decode_dht_record(again);
    if (!std::holds_alternative<DhtRecord>(redecoded)) std::abort();
    if (encode_dht_record(std::get<DhtRecord>(redecoded)) != again) std::abort();
  }
  return 0;
}

// A DHT record as anyone may publish it: decoded to a record or refused with a reason, never UB
// (every field is checked before the signature, so a fuzzer that cannot sign still reaches them);
// a record it accepts, signed again by the harness's own key, survives encode -> decode unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "net/dht/dht_record.h"
#include "net/dht/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet::net;
  static const PeerIdentity harness = PeerIdentity::generate();
  const auto decoded = decode_dht_record(std::string(reinterpret_cast<const char*>(data), size));
  if (const auto* accepted = std::get_if<DhtRecord>(&decoded)) {
    DhtRecord record = *accepted;
    record.record.peer = harness.peer_id();
    const std::string again = encode_dht_record(record, harness);
    const auto redecoded = decode_dht_record(again);
    if (!std::holds_alternative<DhtRecord>(redecoded)) std::abort();
    if (encode_dht_record(std::get<DhtRecord>(redecoded), harness) != again) std::abort();
  }
  return 0;
}

#include "core/address_pins.h"

#include <fmt/core.h>

namespace bouquet::core {

PinnedRecords keep_pinned_records(std::span<const ServerRecord> records, const AddressPins& pins) {
  PinnedRecords out;
  for (const ServerRecord& record : records) {
    const auto pin = pins.find(record.address);
    if (pin == pins.end() || pin->second.key == record.peer) {
      out.kept.push_back(record);
      continue;
    }
    std::string what = fmt::format("the record of peer {} at {}", record.peer.to_string(), record.address);
    if (!record.span.empty()) what += fmt::format(" (blocks {})", record.span.to_string());
    std::string reason =
        pin->second.key
            ? fmt::format("{}: the server there proved it holds the key of peer {}", what, pin->second.key->to_string())
            : fmt::format("{}: the server there did not prove its identity ({})", what, pin->second.failure);
    out.dropped.push_back(DroppedRecord{record, std::move(reason)});
  }
  return out;
}

}  // namespace bouquet::core

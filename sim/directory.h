// The modelled DHT. Servers' records become visible a few round trips after they are announced
// and vanish at their expiry, as in real mode; a lookup answers after its own round trips with
// what was visible when it was issued. No messages are simulated for it: its cost is the delay.
#pragma once

#include "core/server_record.h"
#include "core/time.h"
#include "sim/scenario.h"

#include <string>
#include <vector>

namespace bouquet::sim {

class Directory {
 public:
  explicit Directory(const DirectoryConfig& config) : config_(config) {}

  double announce_delay_s() const;
  double lookup_delay_s() const;

  // Stores `record` (expires_at set by the caller), visible from now + announce_delay_s().
  void announce(core::Time now, const core::ServerRecord& record);
  // Records of `model_id` visible and unexpired at `now`: the newest per peer
  // (core::newest_per_peer), in peer id order.
  std::vector<core::ServerRecord> lookup(core::Time now, const std::string& model_id) const;

 private:
  struct Entry {
    core::Time visible_at;
    core::ServerRecord record;
  };
  DirectoryConfig config_;
  // Each peer's entries in announcement order (so also in visibility order: the delay is fixed),
  // peers in id order in one array: a lookup walks it front to back (one record copy per peer),
  // an announcement finds its peer by binary search and prunes only that peer's entries. A peer
  // is inserted once, on its first announcement (a restarted server keeps its host, so its id).
  struct PeerEntries {
    core::PeerId peer;
    std::vector<Entry> entries;
  };
  std::vector<PeerEntries> peers_;
};

}  // namespace bouquet::sim

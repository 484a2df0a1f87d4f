// The modelled DHT. Servers' records become visible a few round trips after they are announced
// and vanish at their expiry, as in real mode; a lookup answers after its own round trips with
// what was visible when it was issued. No messages are simulated for it: its cost is the delay.
#pragma once

#include "core/server_record.h"
#include "core/time.h"
#include "sim/scenario.h"

#include <deque>
#include <map>
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
  // Each peer's entries in announcement order (so also in visibility order: the delay is fixed).
  // An announcement costs O(log peers): only its own peer's entries are pruned. A lookup costs
  // one record copy per peer.
  std::map<core::PeerId, std::deque<Entry>> entries_;
};

}  // namespace bouquet::sim

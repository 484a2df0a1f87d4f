#include "sim/directory.h"

#include <algorithm>

namespace bouquet::sim {

double Directory::announce_delay_s() const {
  return static_cast<double>(config_.announce_round_trips) * config_.round_trip_s;
}

double Directory::lookup_delay_s() const {
  return static_cast<double>(config_.lookup_round_trips) * config_.round_trip_s;
}

void Directory::announce(core::Time now, const core::ServerRecord& record) {
  // Forget this peer's records that a newer one of it already visible by now supersedes (an older
  // one stays until its successor shows up), and those expired.
  std::deque<Entry>& mine = entries_[record.peer];
  while (mine.size() >= 2 && mine[1].visible_at <= now) mine.pop_front();
  std::erase_if(mine, [&](const Entry& e) { return e.record.expires_at <= now; });
  mine.push_back({now + announce_delay_s(), ++seq_, record});
}

std::vector<core::ServerRecord> Directory::lookup(core::Time now, const std::string& model_id) const {
  std::vector<core::AnnouncedRecord> visible;
  for (const auto& [peer, entries] : entries_) {
    for (const Entry& e : entries) {
      if (e.visible_at > now || e.record.expires_at <= now || e.record.model_id != model_id) continue;
      visible.push_back({e.record, core::Announcement{e.visible_at, e.seq}});
    }
  }
  return core::newest_per_peer(visible);
}

}  // namespace bouquet::sim

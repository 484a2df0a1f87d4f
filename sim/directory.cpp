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
  // Forget what expired, and what a record of the same peer already visible by now supersedes
  // (an older one stays until its successor shows up).
  auto superseded = [&](const Entry& e) {
    return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& newer) {
      return newer.record.peer == e.record.peer && newer.seq > e.seq && newer.visible_at <= now;
    });
  };
  std::vector<Entry> kept;
  for (const Entry& e : entries_) {
    if (e.record.expires_at > now && !superseded(e)) kept.push_back(e);
  }
  entries_ = std::move(kept);
  entries_.push_back({now + announce_delay_s(), ++seq_, record});
}

std::vector<core::ServerRecord> Directory::lookup(core::Time now, const std::string& model_id) const {
  std::vector<core::AnnouncedRecord> visible;
  for (const Entry& e : entries_) {
    if (e.visible_at > now || e.record.expires_at <= now || e.record.model_id != model_id) continue;
    visible.push_back({e.record, core::Announcement{e.visible_at, e.seq}});
  }
  return core::newest_per_peer(visible);
}

}  // namespace bouquet::sim

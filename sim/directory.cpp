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
  auto at = std::lower_bound(peers_.begin(), peers_.end(), record.peer,
                             [](const PeerEntries& p, core::PeerId peer) { return p.peer < peer; });
  if (at == peers_.end() || at->peer != record.peer) at = peers_.insert(at, PeerEntries{record.peer, {}});
  std::vector<Entry>& mine = at->entries;
  size_t superseded = 0;
  while (mine.size() - superseded >= 2 && mine[superseded + 1].visible_at <= now) ++superseded;
  mine.erase(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(superseded));
  std::erase_if(mine, [&](const Entry& e) { return e.record.expires_at <= now; });
  mine.push_back({now + announce_delay_s(), record});
}

std::vector<core::ServerRecord> Directory::lookup(core::Time now, const std::string& model_id) const {
  // What core::newest_per_peer would pick of the visible records, found without gathering them:
  // a peer's entries are in announcement order and become visible in that order (the delay is
  // fixed), so its newest visible record of the model is the last one that qualifies. Peers come
  // out in id order, as peers_ keeps them. One copy per peer: lookups are as frequent as
  // announcements and each reads the whole swarm, so this loop is what a big swarm pays for.
  std::vector<core::ServerRecord> out;
  out.reserve(peers_.size());
  for (const auto& [peer, entries] : peers_) {
    for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
      if (e->visible_at > now || e->record.expires_at <= now || e->record.model_id != model_id) continue;
      out.push_back(e->record);
      break;
    }
  }
  return out;
}

}  // namespace bouquet::sim

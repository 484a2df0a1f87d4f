#include "core/server_record.h"

#include <map>

namespace bouquet::core {

bool announced_later(const Announcement& a, const Announcement& b) {
  if (a.at_s != b.at_s) return a.at_s > b.at_s;
  return a.seq > b.seq;
}

std::vector<ServerRecord> newest_per_peer(std::span<const AnnouncedRecord> records) {
  std::map<PeerId, const AnnouncedRecord*> newest;
  for (const AnnouncedRecord& r : records) {
    auto [it, inserted] = newest.try_emplace(r.record.peer, &r);
    if (!inserted && announced_later(r.announced, it->second->announced)) it->second = &r;
  }
  std::vector<ServerRecord> out;
  out.reserve(newest.size());
  for (const auto& [peer, r] : newest) out.push_back(r->record);
  return out;
}

}  // namespace bouquet::core

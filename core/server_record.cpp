#include "core/server_record.h"

#include <algorithm>
#include <map>

namespace bouquet::core {

double queue_delay_s(const ServerLoad& load) {
  if (!(load.step_s > 0) || !(load.rows_ahead > 0)) return 0;
  // Computations ahead of a newcomer's step: the rows it finds that leave no room for it in the
  // next computation, max_batch rows at a time. Without batching that is every row ahead; with
  // it, a newcomer joins the next computation until max_batch rows are ahead of it.
  const double per_computation = std::max<uint32_t>(1, load.max_batch);
  return std::max(0.0, load.rows_ahead + 1 - per_computation) / per_computation * load.step_s;
}

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

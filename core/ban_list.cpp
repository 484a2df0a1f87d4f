#include "core/ban_list.h"

#include <algorithm>
#include <cmath>

namespace bouquet::core {

Time BanList::ban(PeerId peer, Time now) {
  Entry& e = peers_[peer];
  const double length_s = config_.base_s * std::pow(config_.factor, e.failures);
  ++e.failures;
  e.until = std::max(e.until, now + length_s);
  return e.until;
}

void BanList::forgive(PeerId peer) {
  auto it = peers_.find(peer);
  if (it != peers_.end()) it->second.failures = 0;
}

bool BanList::banned(PeerId peer, Time now) const {
  auto it = peers_.find(peer);
  return it != peers_.end() && it->second.until > now;
}

std::vector<PeerId> BanList::active(Time now) const {
  std::vector<PeerId> out;
  for (const auto& [peer, e] : peers_) {
    if (e.until > now) out.push_back(peer);
  }
  return out;
}

std::optional<Time> BanList::next_expiry(Time now) const {
  std::optional<Time> next;
  for (const auto& [peer, e] : peers_) {
    if (e.until > now && (!next || e.until < *next)) next = e.until;
  }
  return next;
}

uint32_t BanList::failures(PeerId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.failures;
}

}  // namespace bouquet::core

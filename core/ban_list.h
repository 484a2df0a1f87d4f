// Servers a client stays away from for a while after they failed it: exponential
// backoff, base_s after the first failure, times factor after each further one, counted since
// the server last served the client well.
//
// Promises: a banned peer stays banned until its time (ban() never shortens a running ban);
// active() lists the peers banned at `now`, in peer order, as PlanRoute.avoid wants them;
// next_expiry() says when the next ban ends, which is when routing may find a way again.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/peer_id.h"
#include "core/time.h"

namespace bouquet::core {

struct BanListConfig {
  double base_s = 15;
  double factor = 2;
};

class BanList {
 public:
  explicit BanList(BanListConfig config = {}) : config_(config) {}

  // Bans `peer` for base_s x factor^(failures before this one); returns when the ban ends.
  Time ban(PeerId peer, Time now);
  // The peer served well: its next failure is banned for base_s again.
  void forgive(PeerId peer);

  bool banned(PeerId peer, Time now) const;
  std::vector<PeerId> active(Time now) const;
  std::optional<Time> next_expiry(Time now) const;
  uint32_t failures(PeerId peer) const;

 private:
  struct Entry {
    uint32_t failures = 0;
    Time until = 0;
  };
  BanListConfig config_;
  std::map<PeerId, Entry> peers_;
};

}  // namespace bouquet::core

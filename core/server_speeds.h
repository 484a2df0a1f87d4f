// What a client measured of each server's speed, to hold announcements to account (a
// record claiming 1e300 tokens/s was believed and chosen every time). The inference session
// reports how long each one-token step took on each hop; routing (min_latency_route.h) charges a
// server its announced cost per block unless the client measured it far slower than it claims,
// and then the measured cost: a server that lies about its speed loses its claim and is ranked by
// what it does.
//
// Promises: a sample is the step's time on the hop (sent to answered) less the client's RTT
// estimate of the peer at that moment, spread over the hop's blocks; samples are smoothed like
// the RTT (the first taken as is). A measurement counts once `min_samples` steps were seen, and
// until `max_age_s` after its last sample (a server slow because it was busy gets another chance
// later; one never used again is not judged on old news forever). The
// cost charged is the announced one while the measured is at most `claim_tolerance` times it
// (queueing, noise and the wire are in the measure, not in the claim), else the measured one; a
// server that announced nothing is charged what was measured, when anything was. Negative or
// non-finite samples are programmer errors.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "core/peer_id.h"
#include "core/rtt_estimator.h"
#include "core/time.h"

namespace bouquet::core {

struct ServerSpeedsConfig {
  double smoothing = 0.25;     // weight of a new sample, in (0, 1]
  uint64_t min_samples = 3;    // steps before a measurement is believed over a claim
  double claim_tolerance = 4;  // measured / announced cost beyond which the claim is dropped
  double max_age_s = 600;      // a measurement without a new sample for this long is forgotten
};

class ServerSpeeds {
 public:
  explicit ServerSpeeds(const RttEstimator& rtt, ServerSpeedsConfig config = {});

  // A one-token step that took `elapsed_s` on `peer`, which ran `blocks` blocks of it, answered
  // at `now`.
  void observe_step(Time now, PeerId peer, uint32_t blocks, double elapsed_s);
  void forget(PeerId peer) { peers_.erase(peer); }

  // Seconds per block measured, once min_samples steps were seen and while it is fresh at `now`.
  std::optional<double> measured_block_s(Time now, PeerId peer) const;
  uint64_t samples(PeerId peer) const;
  // What routing charges per block: `announced_block_s` (<= 0: nothing announced) or, when the
  // measurement gives the claim the lie, the measurement.
  double block_cost_s(Time now, PeerId peer, double announced_block_s, double unknown_block_s) const;
  // True when the measurement overrides `announced_block_s` at `now`.
  bool claim_dropped(Time now, PeerId peer, double announced_block_s) const;
  const ServerSpeedsConfig& config() const { return config_; }

 private:
  struct Estimate {
    double block_s = 0;
    uint64_t samples = 0;
    Time last = 0;
  };
  const RttEstimator& rtt_;
  ServerSpeedsConfig config_;
  std::map<PeerId, Estimate> peers_;
};

}  // namespace bouquet::core

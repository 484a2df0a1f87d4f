// Smoothed round-trip times to peers, from the pings a driver makes (an InfoRequest and its
// reply, a TCP connect, a SimGrid ping): the driver measures, the estimator only keeps the
// numbers. Routing reads it to price each hop of a chain (min_latency_route.h).
//
// Promises: the first sample of a peer is taken as is; later ones move the estimate by
// `smoothing` of the difference (an exponentially weighted mean, like TCP's SRTT), so one
// outlier does not reroute every client. A peer never measured costs `default_rtt_s`. A failed
// ping counts as a sample of `failure_rtt_s`, so an unreachable peer is priced out of routes
// without being forgotten. Negative or non-finite samples are programmer errors.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "core/peer_id.h"

namespace bouquet::core {

struct RttEstimatorConfig {
  double smoothing = 0.125;    // weight of a new sample, in (0, 1]
  double default_rtt_s = 0.1;  // the price of a peer never measured
  double failure_rtt_s = 10;   // what a failed ping counts as
};

class RttEstimator {
 public:
  explicit RttEstimator(RttEstimatorConfig config = {});

  void observe(PeerId peer, double rtt_s);
  void observe_failure(PeerId peer) { observe(peer, config_.failure_rtt_s); }
  void forget(PeerId peer) { peers_.erase(peer); }

  // The smoothed estimate, or default_rtt_s for a peer never measured.
  double rtt_s(PeerId peer) const;
  // The smoothed estimate, if the peer was measured at all.
  std::optional<double> smoothed_rtt_s(PeerId peer) const;
  uint64_t samples(PeerId peer) const;
  const RttEstimatorConfig& config() const { return config_; }

 private:
  struct Estimate {
    double rtt_s = 0;
    uint64_t samples = 0;
  };
  RttEstimatorConfig config_;
  std::unordered_map<PeerId, Estimate> peers_;  // only looked up: routing prices every server per plan
};

}  // namespace bouquet::core

#include "core/rtt_estimator.h"

#include <cmath>

#include "core/check.h"

namespace bouquet::core {

RttEstimator::RttEstimator(RttEstimatorConfig config) : config_(config) {
  BOUQUET_CHECK(config_.smoothing > 0 && config_.smoothing <= 1, "RTT smoothing must be in (0, 1]");
  BOUQUET_CHECK(config_.default_rtt_s >= 0 && config_.failure_rtt_s >= 0, "RTTs cannot be negative");
}

void RttEstimator::observe(PeerId peer, double rtt_s) {
  BOUQUET_CHECK(std::isfinite(rtt_s) && rtt_s >= 0, "an RTT sample must be finite and non-negative");
  Estimate& e = peers_[peer];
  e.rtt_s = e.samples == 0 ? rtt_s : e.rtt_s + config_.smoothing * (rtt_s - e.rtt_s);
  ++e.samples;
}

double RttEstimator::rtt_s(PeerId peer) const { return smoothed_rtt_s(peer).value_or(config_.default_rtt_s); }

std::optional<double> RttEstimator::smoothed_rtt_s(PeerId peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second.rtt_s;
}

uint64_t RttEstimator::samples(PeerId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.samples;
}

}  // namespace bouquet::core

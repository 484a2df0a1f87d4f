#include "core/server_speeds.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace bouquet::core {

ServerSpeeds::ServerSpeeds(const RttEstimator& rtt, ServerSpeedsConfig config) : rtt_(rtt), config_(config) {
  BOUQUET_CHECK(config_.smoothing > 0 && config_.smoothing <= 1, "speed smoothing must be in (0, 1]");
  BOUQUET_CHECK(config_.claim_tolerance >= 1, "a claim tolerance below 1 would drop honest claims");
}

void ServerSpeeds::observe_step(Time now, PeerId peer, uint32_t blocks, double elapsed_s) {
  BOUQUET_CHECK(std::isfinite(elapsed_s) && elapsed_s >= 0, "a step time must be finite and non-negative");
  BOUQUET_CHECK(blocks > 0, "a step on a hop runs at least one block");
  const double block_s = std::max(0.0, elapsed_s - rtt_.rtt_s(peer)) / blocks;
  Estimate& e = peers_[peer];
  e.block_s = e.samples == 0 ? block_s : e.block_s + config_.smoothing * (block_s - e.block_s);
  ++e.samples;
  e.last = now;
}

std::optional<double> ServerSpeeds::measured_block_s(Time now, PeerId peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.samples < config_.min_samples) return std::nullopt;
  if (now - it->second.last > config_.max_age_s) return std::nullopt;
  return it->second.block_s;
}

uint64_t ServerSpeeds::samples(PeerId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.samples;
}

bool ServerSpeeds::claim_dropped(Time now, PeerId peer, double announced_block_s) const {
  const auto measured = measured_block_s(now, peer);
  if (!measured) return false;
  return announced_block_s <= 0 || *measured > config_.claim_tolerance * announced_block_s;
}

double ServerSpeeds::block_cost_s(Time now, PeerId peer, double announced_block_s, double unknown_block_s) const {
  if (claim_dropped(now, peer, announced_block_s)) return *measured_block_s(now, peer);
  return announced_block_s > 0 ? announced_block_s : unknown_block_s;
}

}  // namespace bouquet::core

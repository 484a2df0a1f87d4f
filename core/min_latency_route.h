// Min-latency routing for generation: the chain of servers that makes one inference step
// fastest, the shortest path over (server, block) (found boundary by boundary, in one pass over
// each server's blocks; ties resolve as Dijkstra's (distance, node) order resolves them).
//
// The graph: "the client holds the activations at block boundary b" is a node, and so is "server
// s has just run block b - 1". Entering server s at boundary b costs one round trip to s (the
// client relays every hop: send, then receive), plus a penalty when s announces less free cache
// than the session reserves, plus running block b. Each further block on s costs 1 /
// inference_rps of s (or what this client measured, where s is far slower than it announces:
// server_speeds.h). Leaving s back to the client is free. A path from boundary blocks.begin to
// blocks.end is a chain; its cost is the expected latency of one step (a one-token step: the
// per-block cost is what a server measured for cached one-token steps).
//
// Promises: the chain returned has the least cost of every chain over usable servers (ties go to
// the smaller peer id, deterministically); every hop runs at least one block. Usable means: of the
// model, online, not expired at `now`, not in plan.avoid, and announcing plan.adapter when the
// plan names one (a LoRA session: a server without the adapter would refuse it). No chain:
// no_route naming the first block nobody usable holds.
#pragma once

#include <span>

#include "core/effect.h"
#include "core/route.h"
#include "core/rtt_estimator.h"
#include "core/server_record.h"
#include "core/server_speeds.h"
#include "core/time.h"

namespace bouquet::core {

struct MinLatencyConfig {
  // Added to a hop on a server whose announced free cache is below the session's need: about
  // what the open would wait before the server makes room or refuses.
  double cache_full_penalty_s = 30;
  // Cost of a block on a server that announced no inference speed (0): pessimistic.
  double unknown_block_s = 1;
  // What this client measured of servers' speeds (server_speeds.h): a server measured far
  // slower than it announces is charged the measurement. Null: announcements are believed.
  const ServerSpeeds* measured = nullptr;
  // Add each server's announced queueing delay (queue_delay_s of its load) to a hop on it, so
  // clients spread over the swarm instead of all picking the fastest chain.
  bool load_aware = true;
};

// The seconds one step spends on `record`'s server per block: 1 / its announced inference_rps,
// unless config.measured gives the claim the lie.
// `now` dates the measurement (a stale one is forgotten).
double block_cost_s(const ServerRecord& record, const MinLatencyConfig& config, Time now = 0);
// The seconds to enter a hop on `record`: round trip, the cache penalty if it applies, and the
// server's queueing delay when config.load_aware.
double hop_entry_cost_s(const ServerRecord& record, uint64_t cache_tokens_needed, const RttEstimator& rtt,
                        const MinLatencyConfig& config);

// True when `record` may carry a hop of `plan` at `now`.
bool usable_for(const ServerRecord& record, const PlanRoute& plan, Time now);

Result<Chain> plan_chain_min_latency(std::span<const ServerRecord> records, const PlanRoute& plan, Time now,
                                     const RttEstimator& rtt, const MinLatencyConfig& config = {});

// The expected latency of one step through `chain` as the planner prices it (for reports such as
// `generate --json`): +inf when a hop's server has no record that holds its span.
double chain_latency_s(const Chain& chain, std::span<const ServerRecord> records, uint64_t cache_tokens_needed,
                       const RttEstimator& rtt, const MinLatencyConfig& config = {}, Time now = 0);

}  // namespace bouquet::core

// A client's chain of servers, and the routing seam. Routing is a pure function of what the
// client knows (server records) to a chain; the session asks for one with a PlanRoute effect
// and receives it as a RoutePlanned input, so a driver can swap the planner: plan_chain_greedy
// here (a baseline), min_latency_route.h for generation, throughput_route.h for passes.
#pragma once

#include <span>
#include <vector>

#include "core/block_span.h"
#include "core/error.h"
#include "core/peer_id.h"
#include "core/server_record.h"

namespace bouquet::core {

// One hop: `peer` runs `span` (which it holds) for the client.
struct Hop {
  PeerId peer;
  BlockSpan span;
  friend bool operator==(const Hop&, const Hop&) = default;
};

// Hops in block order; consecutive spans meet exactly (hop[i].span.end == hop[i+1].span.begin).
using Chain = std::vector<Hop>;

// The planners a driver may answer a PlanRoute with, by the names users write (planners.h).
enum class Routing : uint8_t { min_latency, greedy, throughput };

// True when `chain` covers exactly `blocks`, contiguously and in order.
bool chain_covers(const Chain& chain, BlockSpan blocks);

// A pure baseline planner: from the first uncovered block, take the online server (not in
// `avoid`, for `model_id`, announcing `adapter` when one is named) whose span reaches furthest;
// ties go to the smaller peer id so the choice is deterministic. Fails with no_route naming the
// first block nobody covers.
Result<Chain> plan_chain_greedy(std::span<const ServerRecord> records, const std::string& model_id, BlockSpan blocks,
                                std::span<const PeerId> avoid, const std::string& adapter = "");

}  // namespace bouquet::core

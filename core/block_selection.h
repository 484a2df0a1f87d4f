// Which blocks a server takes, and when it moves: pure functions of what the directory
// says, so net/ and sim/ decide alike and the tests check the decisions themselves. The state
// machine that applies them over time is balancer_node.h.
//
// Promises:
// - Per-block throughput is the sum of the announced throughput of every joining or online,
//   unexpired server of the model holding that block. Sums are kept exactly (in micro-rps
//   integers), so equal situations compare equal and a decision never hinges on rounding.
// - Joining: the contiguous span of n blocks whose per-block throughputs, sorted ascending, are
//   lexicographically smallest (ties: the lowest first block). It lands where the swarm is
//   weakest, and among equally weak places where the rest of the span is weakest too.
// - Rebalancing: simulate this server leaving and re-placing itself, then every movable server
//   re-placing itself in turn (random order from the caller's Rng, until nobody moves or
//   max_rounds). Move iff min_now / min_after < balance_quality and no block is left uncovered:
//   with this server on its new span and everyone else where they are, every block covered
//   before is still held. (Blocks its old and new spans share count as held: a driver keeps them
//   loaded across the move. Forbidding even those would leave swarms stuck where every server
//   is the only holder of some block, at a fraction of the throughput they could reach.) A
//   server re-placing itself keeps its span when it is among the best, so nobody moves for
//   nothing. Pinned servers never move; quality 0 disables moving.
// - Random placement (a baseline for experiments): a first block drawn uniformly from the Rng.
// - Best placement (a baseline too, knowing every server in advance): the spans that maximize the
//   weakest block's throughput, searched exhaustively (branch and bound) within a node budget;
//   beyond it, the best placement found and an upper bound no placement can beat.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/block_span.h"
#include "core/peer_id.h"
#include "core/rng.h"
#include "core/server_record.h"
#include "core/time.h"

namespace bouquet::core {

struct PlacedServer {
  PeerId peer;
  BlockSpan span;
  double throughput_rps = 0;
  bool pinned = false;  // spans given by hand (--blocks): never moved, in reality or simulation
};

// The servers that count for balancing: of the model, joining or online, unexpired at `now`; one
// per peer (its latest-expiring record), in peer order.
std::vector<PlacedServer> placed_servers(std::span<const ServerRecord> records, const std::string& model_id, Time now);

std::vector<double> block_throughputs(std::span<const PlacedServer> servers, uint32_t num_blocks);
// The weakest block's throughput (0 when a block is uncovered).
double min_block_throughput(std::span<const PlacedServer> servers, uint32_t num_blocks);

// The first block of the best span of `span_blocks` blocks over `throughputs` (see above). With
// `keep_begin`, that span wins every tie it is part of.
uint32_t choose_span_begin(std::span<const double> throughputs, uint32_t span_blocks,
                           std::optional<uint32_t> keep_begin = std::nullopt);

// Where a new server of `span_blocks` blocks goes, given the servers already there.
BlockSpan choose_span_to_join(std::span<const PlacedServer> others, uint32_t num_blocks, uint32_t span_blocks);

struct RebalanceConfig {
  double balance_quality = 0.75;  // move iff min_now / min_after < this; 0 disables moving
  uint32_t max_rounds = 64;       // of the simulated re-placement
};

struct RebalanceDecision {
  bool move = false;
  BlockSpan span;            // where to go (the current span when not moving)
  double min_now_rps = 0;    // the weakest block now
  double min_after_rps = 0;  // the weakest block once everyone re-placed (simulated; 0 if not)
  std::string reason;        // one line for logs
};

// Should server `me` (one of `servers`) move? Draws the simulation's order from `rng`.
RebalanceDecision decide_rebalance(std::span<const PlacedServer> servers, uint32_t num_blocks, PeerId me,
                                   const RebalanceConfig& config, Rng& rng);

// Random placement: a span of `span_blocks` blocks whose first block is uniform over the places
// it fits.
BlockSpan choose_span_at_random(uint32_t num_blocks, uint32_t span_blocks, Rng& rng);

struct ServerCapacity {
  double throughput_rps = 0;
  uint32_t span_blocks = 0;
};

struct BestPlacement {
  std::vector<BlockSpan> spans;  // per server, in the order given
  double min_rps = 0;            // the weakest block with these spans (0: some block uncovered)
  // No placement of these servers does better. Equal to min_rps when `exact`; otherwise the
  // smaller of the capacity bound (every server's throughput x blocks, spread evenly over all
  // blocks) and the sum of all throughputs.
  double upper_bound_rps = 0;
  bool exact = false;  // the search finished: min_rps is the optimum
  uint64_t nodes = 0;  // search nodes visited
};

// The placement of `servers` that maximizes the weakest block's throughput. Starts from every
// server joining greedily (in the order given) then re-placing itself until nobody moves, then
// searches all placements (identical servers interchangeable) for a better one, visiting at most
// `max_nodes` search nodes. Deterministic.
BestPlacement best_placement(std::span<const ServerCapacity> servers, uint32_t num_blocks,
                             uint64_t max_nodes = 20'000'000);

}  // namespace bouquet::core

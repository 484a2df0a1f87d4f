// Routing for forward and backward passes (fine-tuning): throughput matters there, not the
// latency of one token, and many clients should spread over the swarm rather than all pick the
// one best chain. So each hop is drawn at random among the usable servers holding the next block,
// with probability proportional to their announced throughput.
//
// Promises: from the first uncovered block, a server holding it is drawn (weights =
// throughput_rps; if every candidate announced 0, uniformly) and runs as far as its span and the
// asked blocks go; repeat. Candidates are considered in peer order, so a seed reproduces the
// chain. Usable is as for min-latency routing (online, of the model, unexpired, not avoided).
// No candidate for a block: no_route naming it.
#pragma once

#include <span>

#include "core/effect.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/server_record.h"
#include "core/time.h"

namespace bouquet::core {

Result<Chain> plan_chain_by_throughput(std::span<const ServerRecord> records, const PlanRoute& plan, Time now,
                                       Rng& rng);

}  // namespace bouquet::core

// Routing of a fine-tuning pass after a failure: the client's forward/backward chain
// keeps every hop that works and re-plans exactly the failed hop's span, by throughput, away from
// the servers it has banned, as inference recovery does for a session (core/recovery.h).
//
// Promises: the result covers the same blocks as `chain`, keeps every other hop as it was, and
// replaces hop `failed` by one or more hops over exactly its span drawn by
// plan_chain_by_throughput (so a seed reproduces it); `plan.blocks` is ignored (the hop's span is
// used), `plan.avoid` should hold the banned peers. No usable server: no_route naming the block.
#pragma once

#include <span>

#include "core/effect.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/server_record.h"
#include "core/time.h"

namespace bouquet::core {

Result<Chain> replan_hop(const Chain& chain, size_t failed, std::span<const ServerRecord> records, PlanRoute plan,
                         Time now, Rng& rng);

}  // namespace bouquet::core

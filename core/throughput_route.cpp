#include "core/throughput_route.h"

#include <fmt/core.h>
#include <algorithm>

#include "core/min_latency_route.h"

namespace bouquet::core {

Result<Chain> plan_chain_by_throughput(std::span<const ServerRecord> records, const PlanRoute& plan, Time now,
                                       Rng& rng) {
  BOUQUET_CHECK(!plan.blocks.empty(), "planning a route for no blocks");
  Chain chain;
  uint32_t at = plan.blocks.begin;
  while (at < plan.blocks.end) {
    std::vector<const ServerRecord*> candidates;
    for (const ServerRecord& r : records) {
      if (r.span.contains(at) && usable_for(r, plan, now)) candidates.push_back(&r);
    }
    if (candidates.empty()) {
      return Error{
          ErrorCode::no_route,
          fmt::format("no usable server of {} holds block {} (online, unexpired, not banned)", plan.model_id, at)};
    }
    std::sort(candidates.begin(), candidates.end(), [](const ServerRecord* a, const ServerRecord* b) {
      return std::tie(a->peer, a->span) < std::tie(b->peer, b->span);
    });
    double total = 0;
    for (const ServerRecord* r : candidates) total += std::max(0.0, r->throughput_rps);
    const ServerRecord* chosen = nullptr;
    if (total > 0) {
      double x = rng.uniform01() * total;
      for (const ServerRecord* r : candidates) {
        if (r->throughput_rps <= 0) continue;
        chosen = r;  // the last positive one absorbs rounding at the top end
        x -= r->throughput_rps;
        if (x < 0) break;
      }
    } else {
      chosen = candidates[rng.below(candidates.size())];
    }
    const uint32_t end = std::min(chosen->span.end, plan.blocks.end);
    chain.push_back(Hop{chosen->peer, BlockSpan{at, end}});
    at = end;
  }
  return chain;
}

}  // namespace bouquet::core

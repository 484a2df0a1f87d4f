#include "core/pass_route.h"

#include "core/check.h"
#include "core/throughput_route.h"

namespace bouquet::core {

Result<Chain> replan_hop(const Chain& chain, size_t failed, std::span<const ServerRecord> records, PlanRoute plan,
                         Time now, Rng& rng) {
  BOUQUET_CHECK(failed < chain.size(), "re-planning a hop the chain does not have");
  plan.blocks = chain[failed].span;
  Result<Chain> replacement = plan_chain_by_throughput(records, plan, now, rng);
  if (!replacement.ok()) return replacement.error();
  Chain out(chain.begin(), chain.begin() + static_cast<std::ptrdiff_t>(failed));
  out.insert(out.end(), replacement.value().begin(), replacement.value().end());
  out.insert(out.end(), chain.begin() + static_cast<std::ptrdiff_t>(failed) + 1, chain.end());
  return out;
}

}  // namespace bouquet::core

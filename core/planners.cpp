#include "core/planners.h"

#include <array>
#include <utility>

#include "core/min_latency_route.h"
#include "core/throughput_route.h"

namespace bouquet::core {
namespace {

constexpr std::array<std::pair<Routing, std::string_view>, 3> kNames{{
    {Routing::min_latency, "min_latency"},
    {Routing::greedy, "greedy"},
    {Routing::throughput, "throughput"},
}};

}  // namespace

std::string_view to_string(Routing routing) {
  for (const auto& [r, name] : kNames) {
    if (r == routing) return name;
  }
  BOUQUET_CHECK(false, "a routing without a name");
  return {};
}

std::optional<Routing> parse_routing(std::string_view name) {
  for (const auto& [r, n] : kNames) {
    if (n == name) return r;
  }
  return std::nullopt;
}

std::string routing_names() {
  std::string out;
  for (const auto& [r, name] : kNames) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

Result<Chain> plan_route(Routing routing, std::span<const ServerRecord> records, const PlanRoute& plan,
                         const PlannerContext& context) {
  switch (routing) {
    case Routing::min_latency: {
      MinLatencyConfig pricing;
      pricing.measured = context.measured;
      pricing.load_aware = context.load_aware;
      if (context.rtt) return plan_chain_min_latency(records, plan, context.now, *context.rtt, pricing);
      return plan_chain_min_latency(records, plan, context.now, RttEstimator{}, pricing);
    }
    case Routing::greedy:
      return plan_chain_greedy(records, plan.model_id, plan.blocks, plan.avoid, plan.adapter);
    case Routing::throughput:
      BOUQUET_CHECK(context.rng != nullptr, "the throughput planner draws: give it an Rng");
      return plan_chain_by_throughput(records, plan, context.now, *context.rng);
  }
  BOUQUET_CHECK(false, "an unknown routing");
  return Chain{};
}

}  // namespace bouquet::core

#include <gtest/gtest.h>

#include "core/min_latency_route.h"
#include "core/planners.h"
#include "core/throughput_route.h"

namespace bouquet::core {
namespace {

ServerRecord record(uint64_t peer, BlockSpan span, double inference_rps) {
  ServerRecord r;
  r.peer = PeerId{peer};
  r.model_id = "m";
  r.span = span;
  r.state = ServerState::online;
  r.inference_rps = inference_rps;
  r.throughput_rps = inference_rps;
  r.expires_at = 1e9;
  return r;
}

TEST(PlannersTest, NamesRoundTripAndUnknownNamesAreRefused) {
  for (Routing r : {Routing::min_latency, Routing::greedy, Routing::throughput}) {
    EXPECT_EQ(parse_routing(to_string(r)), r);
  }
  EXPECT_FALSE(parse_routing("fastest").has_value());
  EXPECT_FALSE(parse_routing("").has_value());
  EXPECT_EQ(routing_names(), "min_latency, greedy, throughput");
}

TEST(PlannersTest, EachNameAnswersWithItsPlanner) {
  // A long slow span and two short fast ones: greedy takes the furthest reach, min latency the
  // faster pair.
  const std::vector<ServerRecord> records{record(1, {0, 4}, 1), record(2, {0, 2}, 1000), record(3, {2, 4}, 1000)};
  PlanRoute plan;
  plan.model_id = "m";
  plan.blocks = BlockSpan{0, 4};
  const RttEstimator rtt;
  const auto greedy = plan_route(Routing::greedy, records, plan, PlannerContext{0, &rtt});
  const auto fast = plan_route(Routing::min_latency, records, plan, PlannerContext{0, &rtt});
  ASSERT_TRUE(greedy.ok() && fast.ok());
  EXPECT_EQ(greedy.value(), plan_chain_greedy(records, "m", plan.blocks, {}).value());
  EXPECT_EQ(fast.value(), plan_chain_min_latency(records, plan, 0, rtt).value());
  EXPECT_EQ(greedy.value().size(), 1u);
  EXPECT_EQ(fast.value().size(), 2u);
  // Without measured round trips, min latency prices every peer at the estimator's default.
  EXPECT_EQ(plan_route(Routing::min_latency, records, plan, PlannerContext{}).value(), fast.value());
  // Throughput draws: one seed, one chain, the same as the planner's own.
  Rng a(7), b(7);
  EXPECT_EQ(plan_route(Routing::throughput, records, plan, PlannerContext{0, nullptr, nullptr, &a}).value(),
            plan_chain_by_throughput(records, plan, 0, b).value());
}

TEST(PlannersTest, APlanThatNamesItsPlannerGetsIt) {
  PlanRoute plan;
  EXPECT_EQ(routing_for(plan, Routing::greedy), Routing::greedy);
  plan.routing = Routing::throughput;
  EXPECT_EQ(routing_for(plan, Routing::greedy), Routing::throughput);
}

}  // namespace
}  // namespace bouquet::core

#include "core/throughput_route.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

using test::test_seed;

ServerRecord server(uint64_t id, uint32_t begin, uint32_t end, double throughput_rps) {
  ServerRecord r;
  r.peer = PeerId{id};
  r.span = BlockSpan{begin, end};
  r.model_id = "m";
  r.throughput_rps = throughput_rps;
  return r;
}

TEST(ThroughputRoute, SpreadsHopsInProportionToThroughput) {
  const uint64_t seed = test_seed(71);
  Rng rng(seed);
  std::vector<ServerRecord> records{server(1, 0, 4, 100), server(2, 0, 4, 300), server(3, 4, 8, 50),
                                    server(4, 2, 8, 1000)};
  records[3].state = ServerState::offline;  // the fastest one is gone
  const PlanRoute plan{1, "m", {0, 8}, {}, 0};
  std::map<PeerId, int> first_hop;
  const int draws = 8000;
  for (int i = 0; i < draws; ++i) {
    auto chain = plan_chain_by_throughput(records, plan, 0, rng);
    ASSERT_TRUE(chain.ok()) << chain.error().to_string();
    ASSERT_TRUE(chain_covers(chain.value(), plan.blocks));
    ASSERT_EQ(chain.value().size(), 2u);
    EXPECT_EQ(chain.value()[1], (Hop{PeerId{3}, {4, 8}}));
    ++first_hop[chain.value()[0].peer];
  }
  // Expected 1/4 and 3/4; 8000 draws put 5 sigma at about 0.024.
  EXPECT_NEAR(first_hop[PeerId{1}] / double(draws), 0.25, 0.024);
  EXPECT_NEAR(first_hop[PeerId{2}] / double(draws), 0.75, 0.024);
}

TEST(ThroughputRoute, SameSeedSameChainsAndNeverAnAvoidedServer) {
  std::vector<ServerRecord> records{server(5, 0, 3, 10), server(1, 0, 6, 10), server(2, 3, 6, 10), server(9, 0, 6, 10)};
  const PlanRoute plan{1, "m", {0, 6}, {PeerId{9}}, 0};
  auto draw = [&](uint64_t seed) {
    Rng rng(seed);
    std::vector<Chain> chains;
    for (int i = 0; i < 50; ++i) chains.push_back(plan_chain_by_throughput(records, plan, 0, rng).value());
    return chains;
  };
  const auto a = draw(7);
  // Records in another order: the same chains.
  std::reverse(records.begin(), records.end());
  EXPECT_EQ(draw(7), a);
  for (const auto& chain : a) {
    for (const auto& hop : chain) EXPECT_NE(hop.peer, PeerId{9});
  }
  records = {server(1, 0, 3, 10)};
  Rng rng(1);
  auto none = plan_chain_by_throughput(records, plan, 0, rng);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("block 3"), std::string::npos);
}

}  // namespace
}  // namespace bouquet::core

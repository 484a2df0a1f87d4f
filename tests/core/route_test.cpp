#include "core/route.h"

#include <gtest/gtest.h>

#include "core/effect.h"

namespace bouquet::core {
namespace {

ServerRecord server(uint64_t id, uint32_t begin, uint32_t end, ServerState state = ServerState::online) {
  ServerRecord r;
  r.peer = PeerId{id};
  r.span = BlockSpan{begin, end};
  r.state = state;
  r.model_id = "m";
  return r;
}

TEST(Route, GreedyTakesTheFurthestReachingServerAtEachBlock) {
  std::vector<ServerRecord> records{server(1, 0, 4), server(2, 0, 6), server(3, 4, 12), server(4, 6, 12)};
  auto chain = plan_chain_greedy(records, "m", BlockSpan{0, 12}, {});
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  // Servers 3 and 4 both reach block 12 from block 6: the tie goes to the smaller id.
  EXPECT_EQ(chain.value(), (Chain{{PeerId{2}, {0, 6}}, {PeerId{3}, {6, 12}}}));
  EXPECT_TRUE(chain_covers(chain.value(), BlockSpan{0, 12}));
}

TEST(Route, PlansOnlyTheAskedBlocksAndAvoidsBannedOfflineAndForeignServers) {
  std::vector<ServerRecord> records{server(1, 0, 12), server(2, 2, 8), server(3, 2, 12, ServerState::offline),
                                    server(5, 5, 12)};
  auto other_model = server(4, 0, 12);
  other_model.model_id = "other";
  records.push_back(other_model);
  const PeerId avoid[] = {PeerId{1}};
  auto chain = plan_chain_greedy(records, "m", BlockSpan{3, 10}, avoid);
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  EXPECT_EQ(chain.value(), (Chain{{PeerId{2}, {3, 8}}, {PeerId{5}, {8, 10}}}));
}

TEST(Route, FailsWithNoRouteNamingTheUncoveredBlock) {
  std::vector<ServerRecord> records{server(1, 0, 4), server(2, 5, 8)};
  auto chain = plan_chain_greedy(records, "m", BlockSpan{0, 8}, {});
  ASSERT_FALSE(chain.ok());
  EXPECT_EQ(chain.error().code, ErrorCode::no_route);
  EXPECT_NE(chain.error().message.find("block 4"), std::string::npos) << chain.error().message;
}

TEST(Route, ChainCoversRejectsGapsOverlapsAndShortChains) {
  EXPECT_FALSE(chain_covers({}, BlockSpan{0, 4}));
  EXPECT_FALSE(chain_covers({{PeerId{1}, {0, 2}}, {PeerId{2}, {3, 4}}}, BlockSpan{0, 4}));
  EXPECT_FALSE(chain_covers({{PeerId{1}, {0, 3}}, {PeerId{2}, {2, 4}}}, BlockSpan{0, 4}));
  EXPECT_FALSE(chain_covers({{PeerId{1}, {0, 3}}}, BlockSpan{0, 4}));
  EXPECT_TRUE(chain_covers({{PeerId{1}, {0, 3}}, {PeerId{2}, {3, 4}}}, BlockSpan{0, 4}));
}

}  // namespace
}  // namespace bouquet::core

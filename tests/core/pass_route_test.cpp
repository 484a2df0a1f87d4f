// Re-planning one hop of a fine-tuning pass's chain: the other hops stay, the failed span gets
// servers that are not avoided, and no server at all is a no_route naming the block.
#include "core/pass_route.h"

#include <gtest/gtest.h>

#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

using test::test_seed;

ServerRecord server(uint64_t id, uint32_t begin, uint32_t end) {
  ServerRecord r;
  r.peer = PeerId{id};
  r.span = BlockSpan{begin, end};
  r.model_id = "m";
  r.throughput_rps = 10;
  return r;
}

TEST(PassRoute, ReplacesOnlyTheFailedHopAvoidingBannedServers) {
  Rng rng(test_seed(3));
  const std::vector<ServerRecord> records{server(1, 0, 4), server(2, 4, 8), server(3, 4, 6), server(4, 6, 8),
                                          server(5, 8, 12)};
  const Chain chain{{PeerId{1}, {0, 4}}, {PeerId{2}, {4, 8}}, {PeerId{5}, {8, 12}}};
  const auto replanned = replan_hop(chain, 1, records, PlanRoute{0, "m", {0, 12}, {PeerId{2}}, 0}, 0, rng);
  ASSERT_TRUE(replanned.ok()) << replanned.error().to_string();
  const Chain expected{{PeerId{1}, {0, 4}}, {PeerId{3}, {4, 6}}, {PeerId{4}, {6, 8}}, {PeerId{5}, {8, 12}}};
  EXPECT_EQ(replanned.value(), expected);
  EXPECT_TRUE(chain_covers(replanned.value(), BlockSpan{0, 12}));
}

TEST(PassRoute, NoOtherServerIsNoRouteNamingTheBlock) {
  Rng rng(test_seed(4));
  const std::vector<ServerRecord> records{server(1, 0, 4), server(2, 4, 8)};
  const Chain chain{{PeerId{1}, {0, 4}}, {PeerId{2}, {4, 8}}};
  const auto replanned = replan_hop(chain, 1, records, PlanRoute{0, "m", {}, {PeerId{2}}, 0}, 0, rng);
  ASSERT_FALSE(replanned.ok());
  EXPECT_EQ(replanned.error().code, ErrorCode::no_route);
  EXPECT_NE(replanned.error().message.find("block 4"), std::string::npos) << replanned.error().message;
}

}  // namespace
}  // namespace bouquet::core

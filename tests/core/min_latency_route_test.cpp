// Min-latency routing: the true shortest chain on crafted graphs, equal to brute force on small
// random ones, and never through a server a client must not use.
#include "core/min_latency_route.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>

#include "core/rng.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

using test::test_seed;

ServerRecord server(uint64_t id, uint32_t begin, uint32_t end, double inference_rps, uint64_t cache_free = 1 << 20) {
  ServerRecord r;
  r.peer = PeerId{id};
  r.span = BlockSpan{begin, end};
  r.model_id = "m";
  r.inference_rps = inference_rps;
  r.throughput_rps = inference_rps;
  r.cache_tokens_free = cache_free;
  return r;
}

PlanRoute plan(BlockSpan blocks, std::vector<PeerId> avoid = {}, uint64_t cache_needed = 0) {
  return PlanRoute{1, "m", blocks, std::move(avoid), cache_needed};
}

RttEstimator uniform_rtt(const std::vector<ServerRecord>& records, double rtt_s) {
  RttEstimator rtt;
  for (const auto& r : records) rtt.observe(r.peer, rtt_s);
  return rtt;
}

Chain must_plan(const std::vector<ServerRecord>& records, const PlanRoute& p, const RttEstimator& rtt) {
  auto chain = plan_chain_min_latency(records, p, 0, rtt);
  EXPECT_TRUE(chain.ok()) << chain.error().to_string();
  return chain.ok() ? chain.value() : Chain{};
}

TEST(MinLatencyRoute, TwoFastServersBeatOneSlowServerHoldingEverything) {
  // The greedy planner takes server 1 (it reaches furthest): 0.05 + 8 x 0.1 s per step.
  std::vector<ServerRecord> records{server(1, 0, 8, 10), server(2, 0, 4, 1000), server(3, 4, 8, 1000)};
  const auto rtt = uniform_rtt(records, 0.05);
  const Chain chain = must_plan(records, plan({0, 8}), rtt);
  EXPECT_EQ(chain, (Chain{{PeerId{2}, {0, 4}}, {PeerId{3}, {4, 8}}}));
  EXPECT_NEAR(chain_latency_s(chain, records, 0, rtt), 2 * 0.05 + 8 * 0.001, 1e-12);
  EXPECT_EQ(plan_chain_greedy(records, "m", {0, 8}, {}).value(), (Chain{{PeerId{1}, {0, 8}}}));
}

TEST(MinLatencyRoute, FarServersLoseToOneNearServerWhenRoundTripsDominate) {
  std::vector<ServerRecord> records{server(1, 0, 8, 100), server(2, 0, 4, 1000), server(3, 4, 8, 1000)};
  RttEstimator rtt;
  rtt.observe(PeerId{1}, 0.05);
  rtt.observe(PeerId{2}, 0.2);
  rtt.observe(PeerId{3}, 0.2);
  EXPECT_EQ(must_plan(records, plan({0, 8}), rtt), (Chain{{PeerId{1}, {0, 8}}}));
}

TEST(MinLatencyRoute, SwitchesServersWhereTheFasterOneEnds) {
  // 1 is faster on the blocks both hold: it keeps [0, 6) and 2 does only what 1 cannot.
  std::vector<ServerRecord> records{server(1, 0, 6, 1000), server(2, 3, 10, 100), server(3, 0, 10, 10)};
  const auto rtt = uniform_rtt(records, 0.01);
  EXPECT_EQ(must_plan(records, plan({0, 10}), rtt), (Chain{{PeerId{1}, {0, 6}}, {PeerId{2}, {6, 10}}}));
  // Only the asked blocks are planned, entering spans in their middle.
  EXPECT_EQ(must_plan(records, plan({4, 9}), rtt), (Chain{{PeerId{1}, {4, 6}}, {PeerId{2}, {6, 9}}}));
}

TEST(MinLatencyRoute, AServerWithoutCacheRoomIsPenalized) {
  std::vector<ServerRecord> records{server(1, 0, 8, 1000, /*cache_free=*/100), server(2, 0, 4, 500),
                                    server(3, 4, 8, 500)};
  const auto rtt = uniform_rtt(records, 0.01);
  EXPECT_EQ(must_plan(records, plan({0, 8}, {}, /*cache_needed=*/100), rtt), (Chain{{PeerId{1}, {0, 8}}}));
  EXPECT_EQ(must_plan(records, plan({0, 8}, {}, /*cache_needed=*/101), rtt),
            (Chain{{PeerId{2}, {0, 4}}, {PeerId{3}, {4, 8}}}));
}

TEST(MinLatencyRoute, NeverUsesBannedOfflineJoiningExpiredOrForeignServers) {
  std::vector<ServerRecord> fast;
  for (uint64_t id = 1; id <= 5; ++id) fast.push_back(server(id, 0, 8, 1000));
  fast[1].state = ServerState::offline;
  fast[2].state = ServerState::joining;
  fast[3].expires_at = 5;  // expired at now = 10
  fast[4].model_id = "other";
  std::vector<ServerRecord> records = fast;
  records.push_back(server(6, 0, 8, 1));  // slow, but the only usable one left
  const auto rtt = uniform_rtt(records, 0.01);
  auto chain = plan_chain_min_latency(records, plan({0, 8}, {PeerId{1}}), 10, rtt);
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  EXPECT_EQ(chain.value(), (Chain{{PeerId{6}, {0, 8}}}));
  // Without it nothing covers the blocks: no_route names the first one.
  records.back().span = BlockSpan{0, 3};
  auto none = plan_chain_min_latency(records, plan({0, 8}, {PeerId{1}}), 10, rtt);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::no_route);
  EXPECT_NE(none.error().message.find("block 3"), std::string::npos) << none.error().message;
}

// Every chain, by enumeration: the cheapest cost over all ways to cut the blocks into hops.
double brute_force_latency(const std::vector<ServerRecord>& records, const PlanRoute& p, Time now,
                           const RttEstimator& rtt) {
  std::function<double(uint32_t)> best_from = [&](uint32_t at) -> double {
    if (at == p.blocks.end) return 0;
    double best = std::numeric_limits<double>::infinity();
    for (const auto& r : records) {
      if (!r.span.contains(at) || !usable_for(r, p, now)) continue;
      for (uint32_t end = at + 1; end <= std::min(r.span.end, p.blocks.end); ++end) {
        const double hop = hop_entry_cost_s(r, p.cache_tokens_needed, rtt, {}) + (end - at) * block_cost_s(r, {});
        best = std::min(best, hop + best_from(end));
      }
    }
    return best;
  };
  return best_from(p.blocks.begin);
}

TEST(MinLatencyRoute, UsesOnlyServersHoldingTheSessionsAdapter) {
  // Server 2 is the fast way through blocks [0, 4), but only 1 and 3 hold adapter "chat".
  std::vector<ServerRecord> records{server(1, 0, 8, 10), server(2, 0, 4, 1000), server(3, 4, 8, 1000)};
  records[0].adapters = {"chat", "code"};
  records[2].adapters = {"chat"};
  const auto rtt = uniform_rtt(records, 0.05);
  PlanRoute with_adapter = plan({0, 8});
  with_adapter.adapter = "chat";
  EXPECT_EQ(must_plan(records, with_adapter, rtt), (Chain{{PeerId{1}, {0, 4}}, {PeerId{3}, {4, 8}}}));
  EXPECT_EQ(must_plan(records, plan({0, 8}), rtt), (Chain{{PeerId{2}, {0, 4}}, {PeerId{3}, {4, 8}}}));
  // Only server 1 holds "code" but it covers everything.
  with_adapter.adapter = "code";
  EXPECT_EQ(must_plan(records, with_adapter, rtt), (Chain{{PeerId{1}, {0, 8}}}));
  // Nobody holds "math": no route, and the error says why.
  with_adapter.adapter = "math";
  const auto none = plan_chain_min_latency(records, with_adapter, 0, rtt);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::no_route);
  EXPECT_NE(none.error().message.find("adapter 'math'"), std::string::npos) << none.error().message;
  EXPECT_FALSE(usable_for(records[1], with_adapter, 0));
  // The greedy planner keeps to the adapter's holders too.
  EXPECT_EQ(plan_chain_greedy(records, "m", {0, 8}, {}, "chat").value(), (Chain{{PeerId{1}, {0, 8}}}));
  records[0].adapters = {"code"};
  EXPECT_EQ(plan_chain_greedy(records, "m", {0, 8}, {}, "chat").error().code, ErrorCode::no_route);
  EXPECT_NE(plan_chain_greedy(records, "m", {0, 8}, {}, "chat").error().message.find("adapter 'chat'"),
            std::string::npos);
  EXPECT_EQ(plan_chain_greedy(records, "m", {4, 8}, {}, "chat").value(), (Chain{{PeerId{3}, {4, 8}}}));
}

TEST(MinLatencyRoute, FindsTheCheapestChainOfEveryEnumeratedOneOnRandomGraphs) {
  const uint64_t seed = test_seed(61);
  Rng rng(seed);
  int routed = 0, unroutable = 0;
  for (int graph = 0; graph < 2000; ++graph) {
    SCOPED_TRACE(testing::Message() << "graph " << graph << " (seed " << seed << ")");
    const uint32_t blocks = 1 + static_cast<uint32_t>(rng.below(7));
    std::vector<ServerRecord> records;
    RttEstimator rtt;
    const int n = 1 + static_cast<int>(rng.below(7));
    for (int i = 0; i < n; ++i) {
      const uint32_t begin = static_cast<uint32_t>(rng.below(blocks));
      const uint32_t end = begin + 1 + static_cast<uint32_t>(rng.below(blocks - begin));
      // Speeds on a coarse grid so that ties really happen.
      auto r = server(100 + i, begin, end, rng.bernoulli(0.1) ? 0 : 10.0 * (1 + rng.below(5)), 10 * rng.below(4));
      if (rng.bernoulli(0.1)) r.state = ServerState::offline;
      if (rng.bernoulli(0.1)) r.expires_at = 0.5;
      records.push_back(r);
      if (rng.bernoulli(0.8)) rtt.observe(r.peer, 0.01 * (1 + rng.below(10)));
    }
    std::vector<PeerId> avoid;
    if (rng.bernoulli(0.3)) avoid.push_back(records[rng.below(records.size())].peer);
    const uint32_t first = static_cast<uint32_t>(rng.below(blocks));
    const BlockSpan asked{first, first + 1 + static_cast<uint32_t>(rng.below(blocks - first))};
    const PlanRoute p = plan(asked, avoid, 10 * rng.below(4));

    const double brute = brute_force_latency(records, p, 1.0, rtt);
    auto chain = plan_chain_min_latency(records, p, 1.0, rtt);
    if (brute == std::numeric_limits<double>::infinity()) {
      ++unroutable;
      ASSERT_FALSE(chain.ok());
      EXPECT_EQ(chain.error().code, ErrorCode::no_route);
      continue;
    }
    ++routed;
    ASSERT_TRUE(chain.ok()) << chain.error().to_string();
    ASSERT_TRUE(chain_covers(chain.value(), asked));
    for (const Hop& hop : chain.value()) {
      EXPECT_EQ(std::count(avoid.begin(), avoid.end(), hop.peer), 0);
      auto it = std::find_if(records.begin(), records.end(), [&](const auto& r) { return r.peer == hop.peer; });
      ASSERT_TRUE(it != records.end() && it->span.contains(hop.span) && usable_for(*it, p, 1.0));
    }
    EXPECT_NEAR(chain_latency_s(chain.value(), records, p.cache_tokens_needed, rtt), brute, 1e-9);
  }
  EXPECT_GT(routed, 800);
  EXPECT_GT(unroutable, 100);
}

TEST(ServerLoad, QueueDelayIsTheComputationsAheadOfANewStep) {
  EXPECT_EQ(queue_delay_s(ServerLoad{}), 0.0) << "idle";
  EXPECT_EQ(queue_delay_s(ServerLoad{5, 0, 1, 4}), 0.0) << "no step time known";
  EXPECT_DOUBLE_EQ(queue_delay_s(ServerLoad{3, 0.1, 1, 3}), 0.3) << "one at a time: three steps ahead";
  EXPECT_DOUBLE_EQ(queue_delay_s(ServerLoad{3, 0.1, 8, 3}), 0.0) << "batched: the newcomer joins the next one";
  EXPECT_DOUBLE_EQ(queue_delay_s(ServerLoad{9, 0.1, 8, 15}), 0.1) << "batched: one full computation ahead";
  EXPECT_DOUBLE_EQ(queue_delay_s(ServerLoad{4, 0.1, 0, 4}), 0.4) << "max_batch 0 reads as 1";
}

TEST(MinLatencyRoute, ABusyServerIsPricedByItsQueueSoNewSessionsGoToTheIdleOne) {
  // Two equal servers for the same blocks; the lower peer id wins ties, and is busy.
  std::vector<ServerRecord> records{server(1, 0, 8, 100), server(2, 0, 8, 100)};
  records[0].load = ServerLoad{6, 0.08, 1, 6};
  const auto rtt = uniform_rtt(records, 0.05);
  EXPECT_EQ(must_plan(records, plan({0, 8}), rtt), (Chain{{PeerId{2}, {0, 8}}}));
  EXPECT_NEAR(hop_entry_cost_s(records[0], 0, rtt, MinLatencyConfig{}), 0.05 + 6 * 0.08, 1e-12);
  MinLatencyConfig blind;
  blind.load_aware = false;
  auto chain = plan_chain_min_latency(records, plan({0, 8}), 0, rtt, blind);
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(chain.value(), (Chain{{PeerId{1}, {0, 8}}})) << "without load, the tie goes to peer 1";
  // The same rows ahead on a server that merges 8 rows per computation cost nothing: the
  // newcomer's step joins the next computation, so the tie goes to peer 1 again.
  records[0].load.max_batch = 8;
  EXPECT_NEAR(hop_entry_cost_s(records[0], 0, rtt, MinLatencyConfig{}), 0.05, 1e-12);
  EXPECT_EQ(must_plan(records, plan({0, 8}), rtt), (Chain{{PeerId{1}, {0, 8}}}));
}

}  // namespace
}  // namespace bouquet::core

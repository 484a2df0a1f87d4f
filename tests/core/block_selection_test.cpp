// Block selection and rebalancing: exact spans on hand-made swarms; on random heterogeneous
// swarms, joining then rebalancing gets within 10% of the best placement there is, and stops.
#include "core/block_selection.h"

#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>
#include <cmath>
#include <functional>

#include "core/throughput.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

using test::test_seed;

PlacedServer placed(uint64_t id, uint32_t begin, uint32_t end, double rps, bool pinned = false) {
  return PlacedServer{PeerId{id}, BlockSpan{begin, end}, rps, pinned};
}

TEST(Throughput, AnnouncedIsTheSmallerOfComputeOverAverageBlocksUsedAndNetwork) {
  // 4096-wide model: 100 Mbit/s carries 1e8 / (4096 x 16) = 1525.9 tokens/s.
  EXPECT_NEAR(network_rps(100e6, 4096), 1525.87890625, 1e-9);
  // Compute-bound: 9 blocks are used 5 at a time on average.
  EXPECT_DOUBLE_EQ(announced_throughput_rps(1000, 9, 100e6, 4096), 200.0);
  // Network-bound: a fast GPU behind a slow link.
  EXPECT_NEAR(announced_throughput_rps(1e6, 1, 10e6, 4096), 152.587890625, 1e-9);
  EXPECT_DOUBLE_EQ(announced_throughput_rps(300, 2, 1e12, 64), 200.0);
}

TEST(BlockSelection, JoinerTakesTheWeakestPlaceThenTheWeakestNeighbourhood) {
  // 8 blocks; throughputs per block: 10 10 10 0 0 10 10 10 -> a 2-block joiner fills the hole.
  std::vector<PlacedServer> swarm{placed(1, 0, 3, 10), placed(2, 5, 8, 10)};
  EXPECT_EQ(choose_span_to_join(swarm, 8, 2), (BlockSpan{3, 5}));
  // A 4-block joiner: [1, 5), [2, 6) and [3, 7) all see {0, 0, 10, 10}: the lowest wins.
  EXPECT_EQ(choose_span_to_join(swarm, 8, 4), (BlockSpan{1, 5}));
  // Lexicographic beyond the minimum: 5 3 3 4 1 7 -> windows of 3 sorted: 335 334 134 147: [2, 5)
  // holds 1? no: [2, 5) = {3, 4, 1} -> 1 3 4; [3, 6) = {4, 1, 7} -> 1 4 7; so [2, 5) wins.
  const std::vector<double> t{5, 3, 3, 4, 1, 7};
  EXPECT_EQ(choose_span_begin(t, 3), 2u);
  EXPECT_EQ(choose_span_begin(t, 1), 4u);
  EXPECT_EQ(choose_span_begin(t, 6), 0u);
  // Ties: the lowest begin, unless told to keep one of the tied spans.
  const std::vector<double> flat{2, 2, 2, 2};
  EXPECT_EQ(choose_span_begin(flat, 2), 0u);
  EXPECT_EQ(choose_span_begin(flat, 2, 2u), 2u);
  EXPECT_EQ(choose_span_begin(t, 3, 0u), 2u) << "keeping only wins ties";
}

TEST(BlockSelection, JoiningServersCountAndExpiredOfflineOrForeignOnesDoNot) {
  auto record = [](uint64_t id, uint32_t begin, uint32_t end, ServerState state, double rps) {
    ServerRecord r;
    r.peer = PeerId{id};
    r.span = {begin, end};
    r.state = state;
    r.throughput_rps = rps;
    r.model_id = "m";
    r.expires_at = 100;
    return r;
  };
  std::vector<ServerRecord> records{record(1, 0, 4, ServerState::online, 5), record(2, 4, 8, ServerState::joining, 5),
                                    record(3, 0, 8, ServerState::offline, 50), record(4, 0, 8, ServerState::online, 50),
                                    record(5, 0, 8, ServerState::online, 50)};
  records[3].expires_at = 10;
  records[4].model_id = "other";
  const auto servers = placed_servers(records, "m", 20);
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(block_throughputs(servers, 8), (std::vector<double>{5, 5, 5, 5, 5, 5, 5, 5}));
  EXPECT_EQ(min_block_throughput(servers, 8), 5.0);
  EXPECT_EQ(min_block_throughput(std::vector<PlacedServer>{placed(1, 0, 4, 5)}, 8), 0.0);
}

TEST(BlockSelection, MovesToAHoleOnlyWhenItPaysAndNeverUncoversABlock) {
  Rng rng(1);
  // Blocks 0-3 are held twice, 4-7 once by a slow server: server 2 should move over there.
  std::vector<PlacedServer> swarm{placed(1, 0, 4, 10), placed(2, 0, 4, 10), placed(3, 4, 8, 2)};
  auto d = decide_rebalance(swarm, 8, PeerId{2}, {}, rng);
  EXPECT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.span, (BlockSpan{4, 8}));
  EXPECT_EQ(d.min_now_rps, 2.0);
  EXPECT_EQ(d.min_after_rps, 10.0);
  // Server 3 cannot leave: it alone holds blocks 4-7.
  EXPECT_FALSE(decide_rebalance(swarm, 8, PeerId{3}, {}, rng).move);
  // Pinned servers and a disabled balancer never move.
  swarm[1].pinned = true;
  EXPECT_FALSE(decide_rebalance(swarm, 8, PeerId{2}, {}, rng).move);
  swarm[1].pinned = false;
  EXPECT_FALSE(decide_rebalance(swarm, 8, PeerId{2}, RebalanceConfig{0, 64}, rng).move);
  // A gain too small for the quality bar: 9 -> 10 is 0.9, above 0.75.
  swarm[2].throughput_rps = 9;
  d = decide_rebalance(swarm, 8, PeerId{2}, {}, rng);
  EXPECT_FALSE(d.move) << d.reason;
  EXPECT_EQ(d.min_after_rps, 10.0);
  EXPECT_TRUE(decide_rebalance(swarm, 8, PeerId{2}, RebalanceConfig{0.95, 64}, rng).move);
}

TEST(BlockSelection, ABalancedSwarmStaysPut) {
  Rng rng(2);
  std::vector<PlacedServer> swarm{placed(1, 0, 4, 10), placed(2, 4, 8, 10), placed(3, 0, 4, 10), placed(4, 4, 8, 10)};
  for (uint64_t id = 1; id <= 4; ++id) {
    auto d = decide_rebalance(swarm, 8, PeerId{id}, RebalanceConfig{0.99, 64}, rng);
    EXPECT_FALSE(d.move) << id << ": " << d.reason;
  }
}

TEST(BlockSelection, AMoveMayKeepTheBlocksBothSpansShareButNeverUncoverAnother) {
  Rng rng(3);
  // Block 0 has only a slow server; the fast server 2 alone holds blocks 1-2. Shifting it to
  // [0, 4) keeps blocks 1-3 held (by itself) and block 4 by server 3: allowed.
  std::vector<PlacedServer> swarm{placed(1, 0, 1, 3), placed(2, 1, 5, 60), placed(3, 3, 7, 5)};
  auto d = decide_rebalance(swarm, 7, PeerId{2}, {}, rng);
  EXPECT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.span, (BlockSpan{0, 4}));
  EXPECT_EQ(d.min_now_rps, 3.0);
  EXPECT_EQ(d.min_after_rps, 5.0);
  // Without server 3, leaving block 4 would uncover it: stay, whatever the gain.
  swarm.pop_back();
  swarm.push_back(placed(3, 5, 7, 5));
  d = decide_rebalance(swarm, 7, PeerId{2}, RebalanceConfig{1.0, 64}, rng);
  EXPECT_FALSE(d.move) << d.reason;
}

// The best minimum per-block throughput of any placement of these servers (pinned ones fixed).
double exhaustive_optimum(std::vector<PlacedServer> servers, uint32_t num_blocks) {
  double best = 0;
  std::function<void(size_t)> place = [&](size_t i) {
    if (i == servers.size()) return void(best = std::max(best, min_block_throughput(servers, num_blocks)));
    if (servers[i].pinned) return place(i + 1);
    const uint32_t n = servers[i].span.size();
    for (uint32_t b = 0; b + n <= num_blocks; ++b) {
      servers[i].span = BlockSpan{b, b + n};
      place(i + 1);
    }
  };
  place(0);
  return best;
}

struct BalanceRun {
  double optimum = 0;
  double after_join = 0;
  double after_rebalance = 0;
  int servers = 0;
  int moves = 0;
  int rounds = 0;  // rounds that moved someone
};

// A random heterogeneous swarm of 2-5 servers over 4-8 blocks (throughputs log-uniform in 1-100
// tokens/s): servers join one by one in random
// order, then rebalance in rounds (each server in random order checks once per round) until a
// round without a move, or 50 rounds.
BalanceRun join_then_rebalance(Rng& rng, double quality) {
  BalanceRun run;
  uint32_t blocks = 0;
  std::vector<PlacedServer> joining;
  while (run.optimum == 0) {  // redraw swarms too small to cover every block
    blocks = 4 + static_cast<uint32_t>(rng.below(5));
    run.servers = 2 + static_cast<int>(rng.below(4));
    joining.clear();
    for (int i = 0; i < run.servers; ++i) {
      const uint32_t n = 1 + static_cast<uint32_t>(rng.below(blocks));
      const uint32_t begin = static_cast<uint32_t>(rng.below(blocks - n + 1));
      joining.push_back(placed(10 + i, begin, begin + n, std::exp(rng.uniform(0, std::log(100.0)))));
    }
    run.optimum = exhaustive_optimum(joining, blocks);
  }
  std::vector<PlacedServer> swarm;
  for (auto& s : joining) {
    if (!s.pinned) s.span = choose_span_to_join(swarm, blocks, s.span.size());
    swarm.push_back(s);
  }
  run.after_join = min_block_throughput(swarm, blocks);
  const RebalanceConfig config{quality, 64};
  for (int round = 0; round < 50; ++round) {
    std::vector<size_t> order(swarm.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    bool moved = false;
    for (size_t i : order) {
      const auto d = decide_rebalance(swarm, blocks, swarm[i].peer, config, rng);
      if (!d.move) continue;
      EXPECT_FALSE(swarm[i].pinned);
      swarm[i].span = d.span;
      ++run.moves;
      moved = true;
    }
    if (!moved) break;
    ++run.rounds;
  }
  run.after_rebalance = min_block_throughput(swarm, blocks);
  return run;
}

TEST(BlockSelection, JoiningThenRebalancingGetsWithinTenPercentOfTheOptimumAndStops) {
  const uint64_t seed = test_seed(81);
  Rng rng(seed);
  // Within 10% takes a quality bar of 0.9: at the default 0.75 a server moves only for a third more.
  const int swarms = 1000;
  int within = 0, joined_within = 0, moves = 0, max_rounds = 0;
  double worst = 1;
  for (int i = 0; i < swarms; ++i) {
    const auto run = join_then_rebalance(rng, 0.9);
    ASSERT_GT(run.optimum, 0);
    EXPECT_GT(run.after_rebalance, 0) << "swarm " << i << " left a block uncovered";
    EXPECT_GE(run.after_rebalance, run.after_join) << "swarm " << i << ": rebalancing made it worse";
    within += run.after_rebalance >= 0.9 * run.optimum;
    joined_within += run.after_join >= 0.9 * run.optimum;
    worst = std::min(worst, run.after_rebalance / run.optimum);
    moves += run.moves;
    max_rounds = std::max(max_rounds, run.rounds);
    // Never moving forever: it settles in a few rounds, each server moving at most twice.
    EXPECT_LE(run.rounds, 5) << "swarm " << i;
    EXPECT_LE(run.moves, 2 * run.servers) << "swarm " << i;
  }
  fmt::print(
      "{} of {} swarms within 10% of the optimum after rebalancing ({} after joining alone); worst {:.2f} "
      "of the optimum; {} moves; at most {} rounds with a move\n",
      within, swarms, joined_within, worst, moves, max_rounds);
  // One server moving at a time, each to its lexicographically best span, cannot escape every
  // local optimum (e.g. [0,1)@3 [1,2)@37 [2,7)@53 [6,8)@25 over 8 blocks: the best placement
  // needs two servers to shift together), so a few swarms in a hundred stay short of it (over
  // seeds 1-8: 981 to 997 of 1000 within 10%); rebalancing must fix most of what joining left.
  EXPECT_GE(within, swarms * 97 / 100);
  EXPECT_GT(within - joined_within, (swarms - joined_within) * 3 / 4);
}

}  // namespace
}  // namespace bouquet::core

namespace bouquet::core {
namespace {

TEST(RandomPlacement, DrawsEveryFittingFirstBlockAndOnlyThose) {
  const uint64_t seed = test::test_seed(5);
  Rng rng(seed);
  std::vector<int> seen(8, 0);
  for (int i = 0; i < 2000; ++i) {
    const BlockSpan s = choose_span_at_random(10, 3, rng);
    ASSERT_EQ(s.size(), 3u);
    ASSERT_LE(s.end, 10u);
    ++seen[s.begin];
  }
  // 8 places, 2000 draws: each expected 250 times; far from it means the draw is not uniform.
  for (int b = 0; b < 8; ++b) EXPECT_NEAR(seen[b], 250, 80) << "first block " << b << "; seed " << seed;
  EXPECT_EQ(choose_span_at_random(4, 4, rng), (BlockSpan{0, 4}));
}

std::vector<PlacedServer> as_placed(std::span<const ServerCapacity> servers, std::span<const BlockSpan> spans) {
  std::vector<PlacedServer> out;
  for (size_t i = 0; i < servers.size(); ++i)
    out.push_back(placed(i + 1, spans[i].begin, spans[i].end, servers[i].throughput_rps));
  return out;
}

TEST(BestPlacement, FindsWhatJoiningAndReplacingOneAtATimeMiss) {
  // The local optimum of the rebalancing test: [0,1)@3 [1,2)@37 [2,7)@53 [6,8)@25 over 8 blocks;
  // re-placing one server at a time cannot leave it, the search must.
  const std::vector<ServerCapacity> servers{{3, 1}, {37, 1}, {53, 5}, {25, 2}};
  std::vector<PlacedServer> probe{placed(1, 0, 1, 3), placed(2, 1, 2, 37), placed(3, 2, 7, 53), placed(4, 6, 8, 25)};
  const auto best = best_placement(servers, 8);
  EXPECT_TRUE(best.exact);
  EXPECT_EQ(best.min_rps, exhaustive_optimum(probe, 8));
  EXPECT_GT(best.min_rps, min_block_throughput(probe, 8));
  EXPECT_EQ(best.upper_bound_rps, best.min_rps);
  EXPECT_EQ(min_block_throughput(as_placed(servers, best.spans), 8), best.min_rps);
  // Not enough blocks to cover the model: no placement has a weakest block above 0.
  const std::vector<ServerCapacity> short_swarm{{5, 1}, {5, 2}};
  const auto none = best_placement(short_swarm, 4);
  EXPECT_TRUE(none.exact);
  EXPECT_EQ(none.min_rps, 0);
}

TEST(BestPlacement, MatchesAnExhaustiveSearchOnRandomSwarms) {
  const uint64_t seed = test::test_seed(17);
  Rng rng(seed);
  int better_than_start = 0;
  for (int swarm = 0; swarm < 300; ++swarm) {
    const uint32_t blocks = 3 + static_cast<uint32_t>(rng.below(6));
    std::vector<ServerCapacity> servers;
    std::vector<PlacedServer> probe;
    const int n = 2 + static_cast<int>(rng.below(4));
    for (int i = 0; i < n; ++i) {
      // A few throughputs repeat so that identical servers are searched as one kind.
      const double rps = rng.below(3) == 0 ? 10.0 : std::round(std::exp(rng.uniform(0, std::log(100.0))));
      servers.push_back({rps, 1 + static_cast<uint32_t>(rng.below(blocks))});
      probe.push_back(placed(i + 1, 0, servers.back().span_blocks, rps));
    }
    const auto best = best_placement(servers, blocks);
    ASSERT_TRUE(best.exact);
    const double optimum = exhaustive_optimum(probe, blocks);
    ASSERT_EQ(best.min_rps, optimum) << "swarm " << swarm << "; BOUQUET_SEED=" << seed;
    ASSERT_EQ(min_block_throughput(as_placed(servers, best.spans), blocks), optimum) << "swarm " << swarm;
    for (size_t i = 0; i < servers.size(); ++i) ASSERT_EQ(best.spans[i].size(), servers[i].span_blocks);
    std::vector<PlacedServer> greedy;
    for (size_t i = 0; i < servers.size(); ++i) {
      auto s = probe[i];
      s.span = choose_span_to_join(greedy, blocks, s.span.size());
      greedy.push_back(s);
    }
    better_than_start += optimum > min_block_throughput(greedy, blocks);
  }
  fmt::print("best placement beat greedy joining in {} of 300 swarms\n", better_than_start);
  EXPECT_GT(better_than_start, 0);
}

TEST(BestPlacement, OverItsBudgetReturnsAValidPlacementAndABoundAboveIt) {
  // 24 servers of 5 kinds over 80 blocks: far more placements than 1000 nodes visit.
  std::vector<ServerCapacity> servers;
  for (int i = 0; i < 24; ++i) servers.push_back({10.0 + 7 * (i % 5), 9 + 4u * (i % 5)});
  const auto best = best_placement(servers, 80, 1000);
  EXPECT_FALSE(best.exact);
  EXPECT_GT(best.min_rps, 0);
  EXPECT_EQ(min_block_throughput(as_placed(servers, best.spans), 80), best.min_rps);
  double capacity = 0;
  for (const auto& s : servers) capacity += s.throughput_rps * s.span_blocks;
  EXPECT_GE(best.upper_bound_rps, best.min_rps);
  EXPECT_LE(best.upper_bound_rps, capacity / 80 + 1e-6);
}

}  // namespace
}  // namespace bouquet::core

namespace bouquet::core {
namespace {

// The definition choose_span_begin promises, computed the slow way: sort every window.
uint32_t sorted_windows_begin(const std::vector<double>& totals, uint32_t n, std::optional<uint32_t> keep) {
  auto key = [&](uint32_t begin) {
    std::vector<double> w(totals.begin() + begin, totals.begin() + begin + n);
    std::sort(w.begin(), w.end());
    return w;
  };
  uint32_t best = 0;
  for (uint32_t b = 1; b + n <= totals.size(); ++b) {
    if (key(b) < key(best)) best = b;
  }
  if (keep && *keep + n <= totals.size() && key(*keep) == key(best)) return *keep;
  return best;
}

TEST(BlockSelection, ChoosesTheSameSpanAsSortingEveryWindow) {
  const uint64_t seed = test::test_seed(23);
  Rng rng(seed);
  for (int i = 0; i < 3000; ++i) {
    // Few distinct values (many ties) or many (up to 200 blocks: several words of ranks).
    const auto blocks = 1 + static_cast<uint32_t>(rng.below(i % 10 == 0 ? 200 : 12));
    const uint64_t distinct = 1 + rng.below(i % 2 ? 3 : 1000);
    std::vector<double> totals(blocks);
    for (auto& t : totals) t = static_cast<double>(rng.below(distinct));
    const auto n = 1 + static_cast<uint32_t>(rng.below(blocks));
    std::optional<uint32_t> keep;
    if (rng.below(2)) keep = static_cast<uint32_t>(rng.below(blocks - n + 1));
    ASSERT_EQ(choose_span_begin(totals, n, keep), sorted_windows_begin(totals, n, keep))
        << "case " << i << ", " << blocks << " blocks, span " << n << "; BOUQUET_SEED=" << seed;
  }
}

}  // namespace
}  // namespace bouquet::core

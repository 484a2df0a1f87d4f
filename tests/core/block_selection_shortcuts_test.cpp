// The shortcuts that keep balancing cheap in swarms of thousands decide exactly as the plain
// procedures do: decide_rebalance asks servers alike (same throughput, same span) once while
// nobody moves, and placed_servers skips sorting records that come in peer order. Here each is
// checked against the plain procedure on random swarms full of servers alike.
#include "core/block_selection.h"

#include <gtest/gtest.h>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

int64_t micro(double rps) { return std::llround(std::max(0.0, rps) * 1e6); }

struct PlainTotals {
  std::vector<int64_t> rps;
  std::vector<int> servers;
  void add(const PlacedServer& s, int sign) {
    for (uint32_t b = s.span.begin; b < std::min<uint32_t>(s.span.end, rps.size()); ++b) {
      rps[b] += sign * micro(s.throughput_rps);
      servers[b] += sign;
    }
  }
  bool covered() const { return std::find(servers.begin(), servers.end(), 0) == servers.end(); }
  double min_rps() const { return covered() ? *std::min_element(rps.begin(), rps.end()) / 1e6 : 0.0; }
  uint32_t best_begin(uint32_t n, uint32_t keep) const {
    std::vector<double> t(rps.begin(), rps.end());
    return choose_span_begin(t, n, keep);
  }
};

// decide_rebalance as its header states it: every movable server re-places itself in turn, in an
// order drawn from the Rng each round, until a round with no move.
RebalanceDecision plain_rebalance(const std::vector<PlacedServer>& servers, uint32_t num_blocks, PeerId me,
                                  const RebalanceConfig& config, Rng& rng) {
  const auto mine = std::find_if(servers.begin(), servers.end(), [&](const auto& s) { return s.peer == me; });
  RebalanceDecision d;
  d.span = mine->span;
  PlainTotals totals{std::vector<int64_t>(num_blocks, 0), std::vector<int>(num_blocks, 0)};
  for (const auto& s : servers) totals.add(s, +1);
  d.min_now_rps = totals.min_rps();
  if (mine->pinned || config.balance_quality <= 0) return d;
  const bool was_covered = totals.covered();
  totals.add(*mine, -1);
  const uint32_t n = mine->span.size();
  const uint32_t begin = totals.best_begin(n, mine->span.begin);
  if (begin == mine->span.begin) return d;
  PlacedServer moved = *mine;
  moved.span = BlockSpan{begin, begin + n};
  totals.add(moved, +1);
  if (was_covered && !totals.covered()) return d;
  std::vector<PlacedServer> sim = servers;
  sim[static_cast<size_t>(mine - servers.begin())] = moved;
  std::vector<size_t> order;
  for (size_t i = 0; i < sim.size(); ++i) {
    if (!sim[i].pinned && sim[i].span.size() > 0 && sim[i].span.size() <= num_blocks) order.push_back(i);
  }
  for (uint32_t round = 0; round < config.max_rounds; ++round) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    bool changed = false;
    for (size_t i : order) {
      totals.add(sim[i], -1);
      const uint32_t b = totals.best_begin(sim[i].span.size(), sim[i].span.begin);
      changed |= b != sim[i].span.begin;
      sim[i].span = BlockSpan{b, b + sim[i].span.size()};
      totals.add(sim[i], +1);
    }
    if (!changed) break;
  }
  d.min_after_rps = totals.min_rps();
  if (!totals.covered() || d.min_after_rps <= 0) return d;
  d.move = d.min_now_rps / d.min_after_rps < config.balance_quality;
  if (d.move) d.span = moved.span;
  return d;
}

// A swarm of a few kinds of server (throughput, span length), many of each, some sharing spans.
std::vector<PlacedServer> swarm_of_alikes(Rng& rng, uint32_t blocks) {
  const auto kinds = 1 + rng.below(4);
  const auto count = 2 + rng.below(rng.below(4) == 0 ? 400 : 40);
  std::vector<std::pair<double, uint32_t>> kind(kinds);
  for (auto& k : kind) k = {static_cast<double>(1 + rng.below(20)) * 0.5, 1 + static_cast<uint32_t>(rng.below(blocks))};
  std::vector<PlacedServer> out;
  for (uint64_t i = 0; i < count; ++i) {
    const auto& [rps, length] = kind[rng.below(kinds)];
    // Four places to start at, so that servers alike often share a span.
    const uint32_t room = blocks - length;
    const auto begin = static_cast<uint32_t>(rng.below(4)) * room / 3;
    out.push_back(PlacedServer{PeerId{i + 1}, BlockSpan{begin, begin + length}, rps, rng.below(10) == 0});
  }
  return out;
}

TEST(BlockSelectionShortcuts, RebalancingDecidesAsReplacingEveryServerInTurn) {
  const uint64_t seed = test::test_seed(17);
  Rng cases(seed);
  int moves = 0, simulated = 0;
  for (int i = 0; i < 400; ++i) {
    const auto blocks = 2 + static_cast<uint32_t>(cases.below(i % 4 == 0 ? 80 : 12));
    const auto servers = swarm_of_alikes(cases, blocks);
    const PeerId me = servers[cases.below(servers.size())].peer;
    const RebalanceConfig config{std::vector<double>{0.5, 0.75, 0.9, 1.01}[cases.below(4)], 64};
    const uint64_t draw_seed = cases.next_u64();
    Rng fast_rng(draw_seed), plain_rng(draw_seed);
    const RebalanceDecision fast = decide_rebalance(servers, blocks, me, config, fast_rng);
    const RebalanceDecision plain = plain_rebalance(servers, blocks, me, config, plain_rng);
    const std::string where =
        fmt::format("case {}: {} servers, {} blocks; BOUQUET_SEED={}", i, servers.size(), blocks, seed);
    ASSERT_EQ(fast.move, plain.move) << where;
    ASSERT_EQ(fast.span, plain.span) << where;
    ASSERT_EQ(fast.min_now_rps, plain.min_now_rps) << where;
    ASSERT_EQ(fast.min_after_rps, plain.min_after_rps) << where;
    // The same draws: a caller's later choices (its next balance period) stay the same too.
    ASSERT_EQ(fast_rng.next_u64(), plain_rng.next_u64()) << where;
    moves += fast.move;
    simulated += fast.min_after_rps > 0;
  }
  // Not a vacuous comparison: many cases ran the re-placement and some moved.
  EXPECT_GT(simulated, 40);
  EXPECT_GT(moves, 10);
}

TEST(BlockSelectionShortcuts, PlacedServersTakeEachPeersLatestRecordInAnyOrder) {
  auto record = [](uint64_t id, uint32_t begin, double expires_at) {
    ServerRecord r;
    r.peer = PeerId{id};
    r.span = {begin, begin + 2};
    r.throughput_rps = static_cast<double>(id);
    r.model_id = "m";
    r.expires_at = expires_at;
    return r;
  };
  // Peer 3 announced twice (the later-expiring record is its truth); peer 2's two records expire
  // together (the first given wins).
  const std::vector<ServerRecord> records{record(3, 0, 50), record(2, 4, 60), record(1, 2, 60), record(3, 6, 70),
                                          record(2, 1, 60)};
  const auto servers = placed_servers(records, "m", 10);
  ASSERT_EQ(servers.size(), 3u);
  EXPECT_EQ(servers[0].peer, PeerId{1});
  EXPECT_EQ(servers[1].peer, PeerId{2});
  EXPECT_EQ(servers[1].span, (BlockSpan{4, 6}));
  EXPECT_EQ(servers[2].peer, PeerId{3});
  EXPECT_EQ(servers[2].span, (BlockSpan{6, 8}));
}

}  // namespace
}  // namespace bouquet::core

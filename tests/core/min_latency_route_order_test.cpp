// plan_chain_min_latency walks its (server, block) graph boundary by boundary instead of through a
// priority queue: it must return exactly the chain Dijkstra with a (distance, node) queue returns,
// ties included, since every scenario's expected output depends on which of two equal chains wins.
// Checked against that Dijkstra on random swarms full of servers alike (equal costs everywhere).
#include "core/min_latency_route.h"

#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>
#include <limits>
#include <queue>

#include "core/rng.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

// The planner as it was written first: Dijkstra over the same nodes, numbered the same way.
Result<Chain> queue_dijkstra(std::span<const ServerRecord> records, const PlanRoute& plan, Time now,
                             const RttEstimator& rtt, const MinLatencyConfig& config) {
  const uint32_t b0 = plan.blocks.begin, b1 = plan.blocks.end;
  std::vector<const ServerRecord*> servers;
  for (const ServerRecord& r : records) {
    if (std::max(plan.blocks.begin, r.span.begin) < std::min(plan.blocks.end, r.span.end) && usable_for(r, plan, now))
      servers.push_back(&r);
  }
  std::sort(servers.begin(), servers.end(),
            [](const auto* a, const auto* b) { return std::tie(a->peer, a->span) < std::tie(b->peer, b->span); });
  servers.erase(std::unique(servers.begin(), servers.end(),
                            [](const auto* a, const auto* b) { return a->peer == b->peer && a->span == b->span; }),
                servers.end());
  const uint32_t client_nodes = b1 - b0 + 1;
  std::vector<uint32_t> offset(servers.size()), lo(servers.size()), hi(servers.size()), owner;
  uint32_t nodes = client_nodes;
  for (size_t i = 0; i < servers.size(); ++i) {
    lo[i] = std::max(b0, servers[i]->span.begin);
    hi[i] = std::min(b1, servers[i]->span.end);
    offset[i] = nodes;
    nodes += hi[i] - lo[i];
    owner.insert(owner.end(), hi[i] - lo[i], static_cast<uint32_t>(i));
  }
  auto boundary_of = [&](uint32_t node) {
    return node < client_nodes ? b0 + node
                               : lo[owner[node - client_nodes]] + (node - offset[owner[node - client_nodes]]) + 1;
  };
  std::vector<double> dist(nodes, kInfinity);
  std::vector<uint32_t> prev(nodes, kNone);
  using Item = std::pair<double, uint32_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
  auto relax = [&](uint32_t from, uint32_t to, double cost) {
    if (dist[from] + cost < dist[to]) {
      dist[to] = dist[from] + cost;
      prev[to] = from;
      queue.emplace(dist[to], to);
    }
  };
  dist[0] = 0;
  queue.emplace(0.0, 0);
  while (!queue.empty()) {
    const auto [d, node] = queue.top();
    queue.pop();
    if (d > dist[node]) continue;
    const uint32_t b = boundary_of(node);
    if (node < client_nodes) {
      if (b == b1) break;
      for (size_t i = 0; i < servers.size(); ++i) {
        if (lo[i] <= b && b < hi[i]) {
          relax(node, offset[i] + (b - lo[i]),
                hop_entry_cost_s(*servers[i], plan.cache_tokens_needed, rtt, config) +
                    block_cost_s(*servers[i], config, now));
        }
      }
    } else {
      const uint32_t i = owner[node - client_nodes];
      if (b < hi[i]) relax(node, node + 1, block_cost_s(*servers[i], config, now));
      relax(node, b - b0, 0.0);
    }
  }
  if (dist[b1 - b0] == kInfinity) return Error{ErrorCode::no_route, "no route"};
  Chain chain;
  for (uint32_t node = b1 - b0; node != 0;) {
    uint32_t server_node = prev[node];
    const uint32_t end = boundary_of(server_node);
    while (prev[server_node] >= client_nodes) server_node = prev[server_node];
    const uint32_t entered_from = prev[server_node];
    chain.push_back(Hop{servers[owner[server_node - client_nodes]]->peer, BlockSpan{b0 + entered_from, end}});
    node = entered_from;
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

TEST(MinLatencyRouteOrder, ReturnsDijkstrasChainTiesIncluded) {
  const uint64_t seed = test::test_seed(29);
  Rng rng(seed);
  int routed = 0, multi_hop = 0;
  for (int c = 0; c < 600; ++c) {
    const auto blocks = 1 + static_cast<uint32_t>(rng.below(c % 5 == 0 ? 80 : 10));
    // A few kinds of server: the same speed, load and round trip, often the same span.
    const auto kinds = 1 + rng.below(3);
    std::vector<std::tuple<double, double, double>> kind;  // inference rps, queue step s, rtt
    for (uint64_t k = 0; k < kinds; ++k) {
      kind.emplace_back(std::vector<double>{4, 10, 25}[rng.below(3)], rng.below(2) ? 0.0 : 0.25,
                        std::vector<double>{0.0, 0.02, 0.06, 0.1}[rng.below(4)]);
    }
    std::vector<ServerRecord> records;
    RttEstimator rtt;
    const auto count = 1 + rng.below(c % 7 == 0 ? 300 : 12);
    for (uint64_t i = 0; i < count; ++i) {
      const auto& [rps, step_s, rtt_s] = kind[rng.below(kinds)];
      const auto length = 1 + static_cast<uint32_t>(rng.below(std::max<uint32_t>(1, blocks / 2)));
      const auto begin = static_cast<uint32_t>(rng.below(3)) * (blocks - length) / 2;
      ServerRecord r;
      r.peer = PeerId{1 + rng.below(count + 5)};  // some peers twice, with two spans
      r.span = BlockSpan{begin, begin + length};
      r.model_id = "m";
      r.inference_rps = rps;
      r.cache_tokens_free = rng.below(4) == 0 ? 0 : 1 << 20;
      r.load = ServerLoad{2, step_s, 1, step_s > 0 ? 3.0 : 0.0};
      r.state = rng.below(20) == 0 ? ServerState::joining : ServerState::online;
      records.push_back(r);
      rtt.observe(r.peer, rtt_s);
    }
    const auto begin = static_cast<uint32_t>(rng.below(blocks));
    const PlanRoute plan{1, "m", BlockSpan{begin, begin + 1 + static_cast<uint32_t>(rng.below(blocks - begin))},
                         rng.below(3) == 0 ? std::vector<PeerId>{records[0].peer} : std::vector<PeerId>{}, 512};
    const MinLatencyConfig config{30, 1, nullptr, rng.below(2) == 0};
    const auto fast = plan_chain_min_latency(records, plan, 0, rtt, config);
    const auto reference = queue_dijkstra(records, plan, 0, rtt, config);
    const std::string where =
        fmt::format("case {}: {} records, {} blocks; BOUQUET_SEED={}", c, records.size(), blocks, seed);
    ASSERT_EQ(fast.ok(), reference.ok()) << where;
    if (!fast.ok()) continue;
    ASSERT_EQ(fast.value(), reference.value()) << where;
    ++routed;
    multi_hop += fast.value().size() > 1;
  }
  EXPECT_GT(routed, 300);
  EXPECT_GT(multi_hop, 100);
}

}  // namespace
}  // namespace bouquet::core

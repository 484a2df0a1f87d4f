#include "core/min_latency_route.h"

#include <fmt/core.h>
#include <algorithm>
#include <limits>

namespace bouquet::core {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

// Usable records in a fixed order (peer, span), duplicates removed: the node numbering and so
// the tie-breaking do not depend on the order a directory returned them in.
std::vector<const ServerRecord*> usable_records(std::span<const ServerRecord> records, const PlanRoute& plan,
                                                Time now) {
  std::vector<const ServerRecord*> out;
  for (const ServerRecord& r : records) {
    const uint32_t lo = std::max(plan.blocks.begin, r.span.begin);
    const uint32_t hi = std::min(plan.blocks.end, r.span.end);
    if (hi > lo && usable_for(r, plan, now)) out.push_back(&r);
  }
  std::sort(out.begin(), out.end(), [](const ServerRecord* a, const ServerRecord* b) {
    return std::tie(a->peer, a->span) < std::tie(b->peer, b->span);
  });
  out.erase(std::unique(
                out.begin(), out.end(),
                [](const ServerRecord* a, const ServerRecord* b) { return a->peer == b->peer && a->span == b->span; }),
            out.end());
  return out;
}

}  // namespace

double block_cost_s(const ServerRecord& record, const MinLatencyConfig& config, Time now) {
  const double announced = record.inference_rps > 0 ? 1.0 / record.inference_rps : 0.0;
  if (config.measured) return config.measured->block_cost_s(now, record.peer, announced, config.unknown_block_s);
  return announced > 0 ? announced : config.unknown_block_s;
}

double hop_entry_cost_s(const ServerRecord& record, uint64_t cache_tokens_needed, const RttEstimator& rtt,
                        const MinLatencyConfig& config) {
  const bool cache_short = record.cache_tokens_free < cache_tokens_needed;
  return rtt.rtt_s(record.peer) + (cache_short ? config.cache_full_penalty_s : 0.0) +
         (config.load_aware ? queue_delay_s(record.load) : 0.0);
}

bool usable_for(const ServerRecord& record, const PlanRoute& plan, Time now) {
  return record.state == ServerState::online && record.model_id == plan.model_id && record.expires_at > now &&
         std::find(plan.avoid.begin(), plan.avoid.end(), record.peer) == plan.avoid.end() &&
         (plan.adapter.empty() ||
          std::find(record.adapters.begin(), record.adapters.end(), plan.adapter) != record.adapters.end());
}

Result<Chain> plan_chain_min_latency(std::span<const ServerRecord> records, const PlanRoute& plan, Time now,
                                     const RttEstimator& rtt, const MinLatencyConfig& config) {
  BOUQUET_CHECK(!plan.blocks.empty(), "planning a route for no blocks");
  const uint32_t b0 = plan.blocks.begin, b1 = plan.blocks.end;
  const auto servers = usable_records(records, plan, now);

  // Nodes: client at boundary b is b - b0; server i after running block b - 1 is
  // offset[i] + (b - lo[i] - 1) for b in (lo[i], hi[i]].
  const uint32_t client_nodes = b1 - b0 + 1;
  std::vector<uint32_t> offset(servers.size()), lo(servers.size()), hi(servers.size());
  std::vector<uint32_t> owner;  // server node -> server index
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

  // Each server's costs, priced once per plan (they are pure functions of the plan's inputs), and
  // the servers a hop may enter at each boundary, in server order: a boundary's edges then cost
  // what they are, not a pass over the whole swarm.
  std::vector<double> block_s(servers.size()), enter_s(servers.size());
  std::vector<uint32_t> first_entry(b1 - b0 + 1, 0);
  for (size_t i = 0; i < servers.size(); ++i) {
    block_s[i] = block_cost_s(*servers[i], config, now);
    enter_s[i] = hop_entry_cost_s(*servers[i], plan.cache_tokens_needed, rtt, config) + block_s[i];
    for (uint32_t b = lo[i]; b < hi[i]; ++b) ++first_entry[b - b0 + 1];
  }
  for (size_t b = 1; b < first_entry.size(); ++b) first_entry[b] += first_entry[b - 1];
  std::vector<uint32_t> entries(first_entry.back());
  {
    std::vector<uint32_t> filled(first_entry.begin(), first_entry.end() - 1);
    for (size_t i = 0; i < servers.size(); ++i) {
      for (uint32_t b = lo[i]; b < hi[i]; ++b) entries[filled[b - b0]++] = static_cast<uint32_t>(i);
    }
  }

  // Shortest paths, computed boundary by boundary: every edge either crosses to the next boundary
  // at a positive cost (a block) or leaves a server for the client at the same boundary for free,
  // so the graph is acyclic in that order and needs no priority queue. The result is the one
  // Dijkstra's (dist, node) order gives, ties included:
  // - the client at b takes the first server (lowest node) of least distance;
  // - a server's next node, offered the same distance from the client at b and from the server's
  //   own previous node, keeps the one Dijkstra would have popped first: the server's node when it
  //   is the one the client at b came from (popped just before the client), else the client's.
  // Costs and distances stay far above each other's rounding, so a positive cost always adds.
  std::vector<double> dist(nodes, kInfinity);
  std::vector<uint32_t> prev(nodes, kNone);
  dist[0] = 0;
  for (uint32_t b = b0; b < b1; ++b) {
    const uint32_t client = b - b0;
    double next_client = kInfinity;
    uint32_t next_client_prev = kNone;
    for (uint32_t e = first_entry[b - b0]; e < first_entry[b - b0 + 1]; ++e) {
      const uint32_t i = entries[e];
      const uint32_t to = offset[i] + (b - lo[i]);
      double best = kInfinity;
      uint32_t from = kNone;
      auto offer = [&](double d, uint32_t node) {
        if (d < best) best = d, from = node;
      };
      const bool continues = b > lo[i];  // the server already ran block b - 1 on this path
      if (continues && prev[client] == to - 1) offer(dist[to - 1] + block_s[i], to - 1);
      offer(dist[client] + enter_s[i], client);
      if (continues && prev[client] != to - 1) offer(dist[to - 1] + block_s[i], to - 1);
      dist[to] = best;
      prev[to] = from;
      if (best < next_client) next_client = best, next_client_prev = to;
    }
    dist[client + 1] = next_client;
    prev[client + 1] = next_client_prev;
  }

  if (dist[b1 - b0] == kInfinity) {
    // The first boundary the client cannot reach names the block nobody usable holds.
    uint32_t reach = b0;
    while (reach < b1 && dist[reach + 1 - b0] < kInfinity) ++reach;
    return Error{ErrorCode::no_route,
                 fmt::format("no usable server of {} holds block {} (online, unexpired, not banned{})", plan.model_id,
                             reach, plan.adapter.empty() ? "" : fmt::format(", with adapter '{}'", plan.adapter))};
  }
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

double chain_latency_s(const Chain& chain, std::span<const ServerRecord> records, uint64_t cache_tokens_needed,
                       const RttEstimator& rtt, const MinLatencyConfig& config, Time now) {
  double total = 0;
  for (const Hop& hop : chain) {
    auto it = std::find_if(records.begin(), records.end(),
                           [&](const ServerRecord& r) { return r.peer == hop.peer && r.span.contains(hop.span); });
    if (it == records.end()) return kInfinity;
    total += hop_entry_cost_s(*it, cache_tokens_needed, rtt, config) + hop.span.size() * block_cost_s(*it, config, now);
  }
  return total;
}

}  // namespace bouquet::core

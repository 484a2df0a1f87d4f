#include "core/block_selection.h"

#include <algorithm>
#include <cmath>
#include <fmt/core.h>
#include <map>

#include "core/check.h"

namespace bouquet::core {
namespace {

// Throughput in micro-rps: sums, removals and comparisons are exact.
int64_t quantize(double rps) { return std::llround(std::max(0.0, rps) * 1e6); }

// Per-block totals and server counts, updated in place as servers come and go.
struct Totals {
  std::vector<int64_t> rps;
  std::vector<int32_t> servers;

  explicit Totals(uint32_t num_blocks) : rps(num_blocks, 0), servers(num_blocks, 0) {}
  void add(const PlacedServer& s, int sign) {
    for (uint32_t b = s.span.begin; b < std::min<uint32_t>(s.span.end, rps.size()); ++b) {
      rps[b] += sign * quantize(s.throughput_rps);
      servers[b] += sign;
    }
  }
  bool covered() const { return std::find(servers.begin(), servers.end(), 0) == servers.end(); }
  double min_rps() const { return covered() ? *std::min_element(rps.begin(), rps.end()) / 1e6 : 0.0; }
};

template <class T>
uint32_t best_begin(std::span<const T> totals, uint32_t n, std::optional<uint32_t> keep) {
  BOUQUET_CHECK(n > 0 && n <= totals.size(), "a span must have between 1 and all blocks");
  auto key = [&](uint32_t begin) {
    std::vector<T> window(totals.begin() + begin, totals.begin() + begin + n);
    std::sort(window.begin(), window.end());
    return window;
  };
  uint32_t best = 0;
  auto best_key = key(0);
  for (uint32_t begin = 1; begin + n <= totals.size(); ++begin) {
    auto k = key(begin);
    if (k < best_key) best = begin, best_key = std::move(k);
  }
  if (keep && *keep + n <= totals.size() && key(*keep) == best_key) return *keep;
  return best;
}

Totals totals_of(std::span<const PlacedServer> servers, uint32_t num_blocks) {
  Totals t(num_blocks);
  for (const auto& s : servers) t.add(s, +1);
  return t;
}

}  // namespace

std::vector<PlacedServer> placed_servers(std::span<const ServerRecord> records,
                                         const std::string& model_id, Time now) {
  std::map<PeerId, const ServerRecord*> latest;
  for (const ServerRecord& r : records) {
    if (r.model_id != model_id || r.expires_at <= now || r.span.empty()) continue;
    if (r.state != ServerState::joining && r.state != ServerState::online) continue;
    auto [it, fresh] = latest.emplace(r.peer, &r);
    if (!fresh && r.expires_at > it->second->expires_at) it->second = &r;
  }
  std::vector<PlacedServer> out;
  for (const auto& [peer, r] : latest) out.push_back(PlacedServer{peer, r->span, r->throughput_rps, false});
  return out;
}

std::vector<double> block_throughputs(std::span<const PlacedServer> servers, uint32_t num_blocks) {
  const Totals t = totals_of(servers, num_blocks);
  std::vector<double> out(num_blocks);
  for (uint32_t b = 0; b < num_blocks; ++b) out[b] = t.rps[b] / 1e6;
  return out;
}

double min_block_throughput(std::span<const PlacedServer> servers, uint32_t num_blocks) {
  return totals_of(servers, num_blocks).min_rps();
}

uint32_t choose_span_begin(std::span<const double> throughputs, uint32_t span_blocks,
                           std::optional<uint32_t> keep_begin) {
  return best_begin<double>(throughputs, span_blocks, keep_begin);
}

BlockSpan choose_span_to_join(std::span<const PlacedServer> others, uint32_t num_blocks,
                              uint32_t span_blocks) {
  const Totals t = totals_of(others, num_blocks);
  const uint32_t begin = best_begin<int64_t>(t.rps, span_blocks, std::nullopt);
  return BlockSpan{begin, begin + span_blocks};
}

RebalanceDecision decide_rebalance(std::span<const PlacedServer> servers, uint32_t num_blocks,
                                   PeerId me, const RebalanceConfig& config, Rng& rng) {
  auto mine = std::find_if(servers.begin(), servers.end(), [&](const auto& s) { return s.peer == me; });
  BOUQUET_CHECK(mine != servers.end(), "decide_rebalance: the deciding server must be among the servers");
  RebalanceDecision d;
  d.span = mine->span;
  Totals totals = totals_of(servers, num_blocks);
  d.min_now_rps = totals.min_rps();
  if (mine->pinned) return d.reason = "pinned", d;
  if (config.balance_quality <= 0) return d.reason = "balancing disabled", d;

  // Leaving must not uncover a block, counting the blocks this server keeps (those its old and
  // new spans share): the rest of the swarm must hold everything else meanwhile.
  const bool was_covered = totals.covered();
  totals.add(*mine, -1);
  const uint32_t n = mine->span.size();
  const uint32_t begin = best_begin<int64_t>(totals.rps, n, mine->span.begin);
  if (begin == mine->span.begin) return d.reason = "already where the swarm is weakest", d;
  PlacedServer moved = *mine;
  moved.span = BlockSpan{begin, begin + n};
  totals.add(moved, +1);
  if (was_covered && !totals.covered()) return d.reason = "moving would uncover a block", d;

  // Simulate: this server moves, then everyone movable re-places itself until nobody does.
  std::vector<PlacedServer> sim(servers.begin(), servers.end());
  sim[mine - servers.begin()] = moved;
  std::vector<size_t> order;
  for (size_t i = 0; i < sim.size(); ++i) {
    if (!sim[i].pinned && sim[i].span.size() > 0 && sim[i].span.size() <= num_blocks) order.push_back(i);
  }
  for (uint32_t round = 0; round < config.max_rounds; ++round) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    bool changed = false;
    for (size_t i : order) {
      PlacedServer& s = sim[i];
      totals.add(s, -1);
      const uint32_t b = best_begin<int64_t>(totals.rps, s.span.size(), s.span.begin);
      changed |= b != s.span.begin;
      s.span = BlockSpan{b, b + s.span.size()};
      totals.add(s, +1);
    }
    if (!changed) break;
  }
  d.min_after_rps = totals.min_rps();
  if (!totals.covered() || d.min_after_rps <= 0) return d.reason = "the swarm would not cover every block", d;
  d.move = d.min_now_rps / d.min_after_rps < config.balance_quality;
  if (d.move) d.span = moved.span;
  d.reason = fmt::format("weakest block {:.6g} rps now, {:.6g} after re-placement: {}", d.min_now_rps,
                         d.min_after_rps, d.move ? "move" : "stay");
  return d;
}

}  // namespace bouquet::core

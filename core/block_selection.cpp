#include "core/block_selection.h"

#include <fmt/core.h>
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

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
    const int64_t q = sign * quantize(s.throughput_rps);
    for (uint32_t b = s.span.begin; b < std::min<uint32_t>(s.span.end, rps.size()); ++b) {
      rps[b] += q;
      servers[b] += sign;
    }
  }
  bool covered() const { return std::find(servers.begin(), servers.end(), 0) == servers.end(); }
  double min_rps() const { return covered() ? *std::min_element(rps.begin(), rps.end()) / 1e6 : 0.0; }
};

// What best_begin works in, kept between calls so that a caller asking many times (a rebalance
// simulation asks once per kind of server and round) allocates nothing and sorts nothing: the
// blocks in ascending order of the last totals seen.
template <class T>
struct BestBeginScratch {
  std::vector<T> last;                        // the totals of the last call
  std::vector<uint32_t> order;                // block indices, ascending by those totals
  std::vector<uint32_t> rank;                 // per block: its total's rank among the distinct totals
  std::vector<T> deltas;                      // how the changed blocks' totals moved since, one per group
  std::vector<std::vector<uint32_t>> groups;  // [0]: unchanged blocks, then one per delta
  std::vector<uint32_t> merged;
  std::vector<int32_t> diff;
  std::vector<uint64_t> nonzero;
};

// Sorts scratch.order by `totals` and ranks each block's total among the distinct totals: the
// ranks that sorting the distinct values and searching each block's would give.
//
// Between two calls of a rebalance simulation one server came back on its span and another left
// its own: the totals moved by a few amounts, each the same over a stretch of blocks. Blocks that
// moved by the same amount keep their order, so the last order, split by amount, gives a few
// sorted lists that merge in linear time. (Any list found out of order is sorted: exact always.)
template <class T>
uint32_t rank_totals(std::span<const T> totals, BestBeginScratch<T>& scratch) {
  constexpr size_t kMaxDeltas = 4;
  const auto blocks = static_cast<uint32_t>(totals.size());
  std::vector<uint32_t>& order = scratch.order;
  auto by_total = [&](uint32_t a, uint32_t b) { return totals[a] < totals[b]; };
  bool sorted = false;
  if (scratch.last.size() == blocks) {
    auto& groups = scratch.groups;
    groups.resize(kMaxDeltas + 1);
    for (auto& g : groups) g.clear();
    scratch.deltas.clear();
    sorted = true;
    for (uint32_t b : order) {
      if (totals[b] == scratch.last[b]) {
        groups[0].push_back(b);
        continue;
      }
      const T delta = totals[b] - scratch.last[b];
      auto it = std::find(scratch.deltas.begin(), scratch.deltas.end(), delta);
      if (it == scratch.deltas.end()) {
        if (scratch.deltas.size() == kMaxDeltas) {
          sorted = false;
          break;
        }
        scratch.deltas.push_back(delta);
        it = scratch.deltas.end() - 1;
      }
      groups[1 + static_cast<size_t>(it - scratch.deltas.begin())].push_back(b);
    }
    if (sorted) {
      order = groups[0];
      for (size_t g = 1; g <= scratch.deltas.size(); ++g) {
        if (!std::is_sorted(groups[g].begin(), groups[g].end(), by_total))
          std::sort(groups[g].begin(), groups[g].end(), by_total);
        scratch.merged.resize(order.size() + groups[g].size());
        std::merge(order.begin(), order.end(), groups[g].begin(), groups[g].end(), scratch.merged.begin(), by_total);
        std::swap(order, scratch.merged);
      }
    }
  }
  if (!sorted) {
    order.resize(blocks);
    for (uint32_t b = 0; b < blocks; ++b) order[b] = b;
    std::sort(order.begin(), order.end(), by_total);
  }
  scratch.last.assign(totals.begin(), totals.end());
  scratch.rank.resize(blocks);
  uint32_t distinct = 0;
  for (uint32_t i = 0; i < blocks; ++i) {
    if (i > 0 && totals[order[i - 1]] < totals[order[i]]) ++distinct;
    scratch.rank[order[i]] = distinct;
  }
  return blocks == 0 ? 0 : distinct + 1;
}

// True when the window [begin, begin + n) is strictly smaller (as best_begin compares windows)
// than every other window: then best_begin answers `begin` without ranking anything. Two windows
// compare by the smallest total of their symmetric difference (the blocks they share cancel), so
// it suffices that, against every other window V, the smallest total of this window's blocks
// outside V is below every total of V's blocks outside this window. Linear in the blocks, no
// allocation; when it says no, the full comparison decides.
template <class T>
bool strictly_best(std::span<const T> totals, uint32_t n, uint32_t begin) {
  const auto blocks = static_cast<uint32_t>(totals.size());
  const uint32_t end = begin + n;
  T window_min = totals[begin];
  for (uint32_t b = begin + 1; b < end; ++b) window_min = std::min(window_min, totals[b]);
  // Windows to the left, overlapping: V = [begin - k, end - k) for k < n leaves out this window's
  // last k blocks and adds the k blocks before it.
  T suffix_min = totals[end - 1];
  T added_min = totals[begin - (begin > 0 ? 1 : 0)];
  for (uint32_t k = 1; k < n && k <= begin; ++k) {
    suffix_min = std::min(suffix_min, totals[end - k]);
    added_min = std::min(added_min, totals[begin - k]);
    if (!(suffix_min < added_min)) return false;
  }
  // Windows entirely to the left hold nothing of this one: together they cover [0, begin).
  if (begin >= n) {
    for (uint32_t b = 0; b < begin; ++b) {
      if (!(window_min < totals[b])) return false;
    }
  }
  // The same to the right: V = [begin + k, end + k) leaves out the first k blocks.
  T prefix_min = totals[begin];
  added_min = totals[end < blocks ? end : end - 1];
  for (uint32_t k = 1; k < n && end + k <= blocks; ++k) {
    prefix_min = std::min(prefix_min, totals[begin + k - 1]);
    added_min = std::min(added_min, totals[end + k - 1]);
    if (!(prefix_min < added_min)) return false;
  }
  if (end + n <= blocks) {
    for (uint32_t b = end; b < blocks; ++b) {
      if (!(window_min < totals[b])) return false;
    }
  }
  return true;
}

// The first block of the window of n blocks whose totals, sorted ascending, are lexicographically
// smallest (ties: the lowest begin; with `keep`, keep wins every tie it is part of).
//
// Two windows' sorted totals compare like this: at the smallest value the two hold a different
// number of times, the window holding it more often is the smaller. So instead of sorting every
// window, it slides one window along and keeps, per distinct value (by rank), how many more times
// the current window holds it than the best so far; the lowest rank with a nonzero difference
// decides. Linear in the blocks (plus ranking the totals), where sorting each window cost
// O(blocks x n log n) and an allocation per window.
template <class T>
uint32_t best_begin(std::span<const T> totals, uint32_t n, std::optional<uint32_t> keep, BestBeginScratch<T>& scratch) {
  BOUQUET_CHECK(n > 0 && n <= totals.size(), "a span must have between 1 and all blocks");
  const auto blocks = static_cast<uint32_t>(totals.size());
  if (keep && *keep + n <= blocks && strictly_best(totals, n, *keep)) return *keep;
  const uint32_t distinct = rank_totals(totals, scratch);
  const std::vector<uint32_t>& rank = scratch.rank;
  std::vector<int32_t>& diff = scratch.diff;  // current window minus best window
  diff.assign(distinct, 0);
  std::vector<uint64_t>& nonzero = scratch.nonzero;  // ranks whose diff is not 0
  nonzero.assign((distinct + 63) / 64, 0);
  auto bump = [&](uint32_t r, int32_t by) {
    diff[r] += by;
    if (diff[r] != 0)
      nonzero[r / 64] |= uint64_t{1} << (r % 64);
    else
      nonzero[r / 64] &= ~(uint64_t{1} << (r % 64));
  };
  uint32_t best = 0;
  for (uint32_t begin = 1; begin + n <= blocks; ++begin) {
    bump(rank[begin - 1], -1);
    bump(rank[begin + n - 1], +1);
    for (size_t w = 0; w < nonzero.size(); ++w) {
      if (nonzero[w] == 0) continue;
      const uint32_t lowest = static_cast<uint32_t>(w * 64 + std::countr_zero(nonzero[w]));
      if (diff[lowest] > 0) {
        // Smaller than the best: it becomes the best, and the differences vanish.
        best = begin;
        for (size_t x = w; x < nonzero.size(); ++x) {
          for (uint64_t bits = nonzero[x]; bits != 0; bits &= bits - 1) diff[x * 64 + std::countr_zero(bits)] = 0;
          nonzero[x] = 0;
        }
      }
      break;
    }
  }
  if (keep && *keep != best && *keep + n <= blocks) {
    // keep wins a tie: the same multiset of totals as the best window, that is of ranks.
    std::fill(diff.begin(), diff.end(), 0);
    for (uint32_t i = 0; i < n; ++i) {
      ++diff[rank[*keep + i]];
      --diff[rank[best + i]];
    }
    if (std::all_of(diff.begin(), diff.end(), [](int32_t d) { return d == 0; })) return *keep;
  }
  return best;
}

template <class T>
uint32_t best_begin(std::span<const T> totals, uint32_t n, std::optional<uint32_t> keep) {
  BestBeginScratch<T> scratch;
  return best_begin(totals, n, keep, scratch);
}

// The kinds of server (quantized throughput, span) known to stay where they are under the
// current totals (decide_rebalance's simulation).
class StayMemo {
 public:
  struct Key {
    int64_t rps;
    uint32_t begin, end;
    bool operator==(const Key&) const = default;
  };
  bool known(const Key& key) const {
    auto it = verified_.find(key);
    return it != verified_.end() && it->second == generation_;
  }
  void remember(const Key& key) { verified_[key] = generation_; }
  void forget_all() { ++generation_; }

 private:
  struct Hash {
    size_t operator()(const Key& k) const {
      return std::hash<int64_t>{}(k.rps) ^ (std::hash<uint64_t>{}((uint64_t{k.begin} << 32) | k.end) * 31);
    }
  };
  std::unordered_map<Key, uint64_t, Hash> verified_;  // key -> the totals' generation it stayed under
  uint64_t generation_ = 0;
};

Totals totals_of(std::span<const PlacedServer> servers, uint32_t num_blocks) {
  // Each server changes the totals where its span starts and where it ends, then a running sum
  // fills them in: one step per server and per block, where adding span by span cost a step per
  // block held (every rebalancing check in a big swarm starts here). Integer sums: exactly
  // Totals::add's totals.
  Totals t(num_blocks);
  std::vector<int64_t> rps_step(num_blocks + 1, 0);
  std::vector<int32_t> servers_step(num_blocks + 1, 0);
  for (const auto& s : servers) {
    const uint32_t end = std::min(s.span.end, num_blocks);
    if (s.span.begin >= end) continue;
    const int64_t q = quantize(s.throughput_rps);
    rps_step[s.span.begin] += q;
    rps_step[end] -= q;
    ++servers_step[s.span.begin];
    --servers_step[end];
  }
  int64_t rps = 0;
  int32_t count = 0;
  for (uint32_t b = 0; b < num_blocks; ++b) {
    rps += rps_step[b];
    count += servers_step[b];
    t.rps[b] = rps;
    t.servers[b] = count;
  }
  return t;
}

}  // namespace

std::vector<PlacedServer> placed_servers(std::span<const ServerRecord> records, const std::string& model_id, Time now) {
  std::vector<const ServerRecord*> counted;
  counted.reserve(records.size());
  for (const ServerRecord& r : records) {
    if (r.model_id != model_id || r.expires_at <= now || r.span.empty()) continue;
    if (r.state != ServerState::joining && r.state != ServerState::online) continue;
    counted.push_back(&r);
  }
  // Directories answer in peer order, one record per peer: then this sort finds nothing to do.
  // Stable, so that of one peer's records expiring at once the first given wins.
  auto by_peer = [](const ServerRecord* a, const ServerRecord* b) { return a->peer < b->peer; };
  if (!std::is_sorted(counted.begin(), counted.end(), by_peer)) {
    std::stable_sort(counted.begin(), counted.end(), by_peer);
  }
  std::vector<PlacedServer> out;
  out.reserve(counted.size());
  for (size_t i = 0; i < counted.size();) {
    const ServerRecord* latest = counted[i];
    size_t j = i + 1;
    for (; j < counted.size() && counted[j]->peer == latest->peer; ++j) {
      if (counted[j]->expires_at > latest->expires_at) latest = counted[j];
    }
    out.push_back(PlacedServer{latest->peer, latest->span, latest->throughput_rps, false});
    i = j;
  }
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

BlockSpan choose_span_to_join(std::span<const PlacedServer> others, uint32_t num_blocks, uint32_t span_blocks) {
  const Totals t = totals_of(others, num_blocks);
  const uint32_t begin = best_begin<int64_t>(t.rps, span_blocks, std::nullopt);
  return BlockSpan{begin, begin + span_blocks};
}

RebalanceDecision decide_rebalance(std::span<const PlacedServer> servers, uint32_t num_blocks, PeerId me,
                                   const RebalanceConfig& config, Rng& rng) {
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
  BestBeginScratch<int64_t> scratch;
  const uint32_t begin = best_begin<int64_t>(totals.rps, n, mine->span.begin, scratch);
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
  // Where a server re-places itself depends only on the totals and on its throughput and span:
  // servers alike (same GPU and link, same span) decide alike. So while nobody moves (the totals
  // stay as they are), each such kind is asked once; a move changes the totals and starts afresh.
  // This keeps a decision's cost in a swarm of thousands to one look-up per server and round.
  StayMemo stays;
  for (uint32_t round = 0; round < config.max_rounds; ++round) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    bool changed = false;
    for (size_t i : order) {
      PlacedServer& s = sim[i];
      const StayMemo::Key key{quantize(s.throughput_rps), s.span.begin, s.span.end};
      if (stays.known(key)) continue;
      totals.add(s, -1);
      const uint32_t b = best_begin<int64_t>(totals.rps, s.span.size(), s.span.begin, scratch);
      if (b == s.span.begin) {
        stays.remember(key);
      } else {
        changed = true;
        stays.forget_all();
      }
      s.span = BlockSpan{b, b + s.span.size()};
      totals.add(s, +1);
    }
    if (!changed) break;
  }
  d.min_after_rps = totals.min_rps();
  if (!totals.covered() || d.min_after_rps <= 0) return d.reason = "the swarm would not cover every block", d;
  d.move = d.min_now_rps / d.min_after_rps < config.balance_quality;
  if (d.move) d.span = moved.span;
  d.reason = fmt::format("weakest block {:.6g} rps now, {:.6g} after re-placement: {}", d.min_now_rps, d.min_after_rps,
                         d.move ? "move" : "stay");
  return d;
}

BlockSpan choose_span_at_random(uint32_t num_blocks, uint32_t span_blocks, Rng& rng) {
  BOUQUET_CHECK(span_blocks > 0 && span_blocks <= num_blocks, "a span must have between 1 and all blocks");
  const auto begin = static_cast<uint32_t>(rng.below(num_blocks - span_blocks + 1));
  return BlockSpan{begin, begin + span_blocks};
}

namespace {

// Branch and bound over placements, block by block from the left: at block p it decides how many
// servers of each kind (same throughput, same span length: interchangeable) start there, and
// abandons a branch as soon as some block, decided or not, can no longer beat the best minimum
// found so far even if every server still unplaced covered it.
class PlacementSearch {
 public:
  PlacementSearch(std::span<const ServerCapacity> servers, uint32_t num_blocks, uint64_t max_nodes)
      : blocks_(num_blocks), max_nodes_(max_nodes), ending_(num_blocks + 1, 0) {
    std::map<std::pair<int64_t, uint32_t>, size_t> kind_of;
    for (const auto& s : servers) {
      auto [it, fresh] = kind_of.emplace(std::pair{quantize(s.throughput_rps), s.span_blocks}, kinds_.size());
      if (fresh) kinds_.push_back(Kind{it->first.first, s.span_blocks, 0});
      ++kinds_[it->second].remaining;
      remaining_rps_ += it->first.first;
    }
  }

  // Searches for a placement whose weakest block beats `floor` (micro-rps). True when it ran to
  // the end within the budget.
  bool run(int64_t floor) {
    best_ = floor;
    block(0, 0, std::numeric_limits<int64_t>::max());
    return nodes_ <= max_nodes_;
  }
  bool improved() const { return !best_starts_.empty(); }
  int64_t best() const { return best_; }
  uint64_t nodes() const { return nodes_; }
  // The best placement's spans, kind by kind: (throughput, length) -> first blocks.
  const std::vector<std::pair<size_t, uint32_t>>& best_starts() const { return best_starts_; }
  const auto& kinds() const { return kinds_; }

 private:
  struct Kind {
    int64_t rps;
    uint32_t length;
    uint32_t remaining;
  };

  // Block p with `active` micro-rps from the servers started before p (ending ones not yet off).
  void block(uint32_t p, int64_t active, int64_t path_min) {
    if (++nodes_ > max_nodes_) return;
    if (p == blocks_) {
      best_ = path_min;
      best_starts_ = starts_;
      return;
    }
    choose(0, p, active - ending_[p], path_min);
  }

  void choose(size_t k, uint32_t p, int64_t sum, int64_t path_min) {
    if (nodes_ > max_nodes_) return;
    if (k == kinds_.size()) {
      if (sum <= best_ || !future_can_beat(p, sum)) return;
      return block(p + 1, sum, std::min(path_min, sum));
    }
    Kind& kind = kinds_[k];
    if (p + kind.length > blocks_) {
      if (kind.remaining > 0) return;  // a server left that can no longer be placed
      // None of this kind starts here; its span would end past ending_ (ASan found the
      // out-of-bounds += 0 the loop below made for c = 0).
      return choose(k + 1, p, sum, path_min);
    }
    const uint32_t most = kind.remaining;
    const uint32_t least = p + kind.length == blocks_ ? kind.remaining : 0;
    for (uint32_t c = most + 1; c-- > least;) {
      kind.remaining -= c;
      remaining_rps_ -= c * kind.rps;
      ending_[p + kind.length] += c * kind.rps;
      for (uint32_t i = 0; i < c; ++i) starts_.emplace_back(k, p);
      choose(k + 1, p, sum + c * kind.rps, path_min);
      starts_.resize(starts_.size() - c);
      ending_[p + kind.length] -= c * kind.rps;
      remaining_rps_ += c * kind.rps;
      kind.remaining += c;
      if (nodes_ > max_nodes_) return;
    }
  }

  // Every later block q gets at most what covers it already plus every unplaced server.
  bool future_can_beat(uint32_t p, int64_t sum) const {
    int64_t active = sum;
    for (uint32_t q = p + 1; q < blocks_; ++q) {
      active -= ending_[q];
      if (active + remaining_rps_ <= best_) return false;
    }
    return true;
  }

  uint32_t blocks_;
  uint64_t max_nodes_;
  uint64_t nodes_ = 0;
  std::vector<Kind> kinds_;
  std::vector<int64_t> ending_;  // micro-rps of the started servers whose spans end at each block
  int64_t remaining_rps_ = 0;    // of the servers not placed yet
  int64_t best_ = 0;
  std::vector<std::pair<size_t, uint32_t>> starts_;  // (kind, first block) on the current path
  std::vector<std::pair<size_t, uint32_t>> best_starts_;
};

}  // namespace

BestPlacement best_placement(std::span<const ServerCapacity> servers, uint32_t num_blocks, uint64_t max_nodes) {
  BOUQUET_CHECK(num_blocks > 0, "best_placement needs at least one block");
  for (const auto& s : servers) {
    BOUQUET_CHECK(s.span_blocks > 0 && s.span_blocks <= num_blocks, "a span must have between 1 and all blocks");
  }
  // A good start: greedy joins in the given order, then re-placements until nobody moves.
  std::vector<PlacedServer> placed;
  for (size_t i = 0; i < servers.size(); ++i) {
    PlacedServer s{PeerId{i + 1}, {}, servers[i].throughput_rps, false};
    s.span = choose_span_to_join(placed, num_blocks, servers[i].span_blocks);
    placed.push_back(s);
  }
  Totals totals = totals_of(placed, num_blocks);
  BestBeginScratch<int64_t> scratch;
  for (int round = 0; round < 64; ++round) {
    bool changed = false;
    for (auto& s : placed) {
      totals.add(s, -1);
      const uint32_t b = best_begin<int64_t>(totals.rps, s.span.size(), s.span.begin, scratch);
      changed |= b != s.span.begin;
      s.span = BlockSpan{b, b + s.span.size()};
      totals.add(s, +1);
    }
    if (!changed) break;
  }
  BestPlacement out;
  for (const auto& s : placed) out.spans.push_back(s.span);
  const int64_t start = totals.covered() ? *std::min_element(totals.rps.begin(), totals.rps.end()) : 0;

  PlacementSearch search(servers, num_blocks, max_nodes);
  out.exact = search.run(start);
  out.nodes = search.nodes();
  if (search.improved()) {
    // Hand each kind's first blocks to its servers in the order given.
    std::map<size_t, std::vector<uint32_t>> begins;
    for (auto [kind, begin] : search.best_starts()) begins[kind].push_back(begin);
    for (size_t i = 0; i < servers.size(); ++i) {
      const int64_t rps = quantize(servers[i].throughput_rps);
      for (auto& [kind, list] : begins) {
        const auto& k = search.kinds()[kind];
        if (k.rps != rps || k.length != servers[i].span_blocks || list.empty()) continue;
        out.spans[i] = BlockSpan{list.back(), list.back() + k.length};
        list.pop_back();
        break;
      }
    }
  }
  std::vector<PlacedServer> best;
  for (size_t i = 0; i < servers.size(); ++i) {
    best.push_back(PlacedServer{PeerId{i + 1}, out.spans[i], servers[i].throughput_rps, false});
  }
  out.min_rps = min_block_throughput(best, num_blocks);
  if (out.exact) {
    out.upper_bound_rps = out.min_rps;
  } else {
    int64_t capacity = 0, all = 0;
    for (const auto& s : servers)
      capacity += quantize(s.throughput_rps) * s.span_blocks, all += quantize(s.throughput_rps);
    out.upper_bound_rps = std::max(out.min_rps, std::min(capacity / num_blocks, all) / 1e6);
  }
  return out;
}

}  // namespace bouquet::core

// A server's load-balancing life as a state machine: when to join and where, when to
// look again and whether to move, what to announce. It decides; the driver loads blocks, runs
// the BlockServer for the span and talks to the directory.
//
//   start() --(pinned: --blocks A:B)--------------------------------> MoveToSpan(A:B)
//   start() -> join timer (uniform in [0, join_delay_s], from the node's Rng) -> DirectoryLookup
//     -> DirectoryAnswer -> choose_span_to_join -> MoveToSpan + Announce(joining)
//   SpanLoaded -> Announce(online); balance timer (balance_period_s x uniform [0.5, 1.5])
//     -> DirectoryLookup -> DirectoryAnswer -> decide_rebalance: stay (re-arm) or move:
//        Announce(old span, offline), MoveToSpan(new), Announce(new span, joining), ...
//   every update_period_s: Announce(current state), expiring 2 x update_period_s later
//   stop() -> Announce(offline); nothing more.
//
// Promises: pinned servers never look for another span; balance_quality 0 never moves; every
// record it announces carries its current span, state, throughput and free cache; answers to
// lookups it no longer waits for are ignored. Timers: 1 = join, 2 = balance, 3 = announce.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/block_selection.h"
#include "core/effect.h"
#include "core/input.h"
#include "core/rng.h"

namespace bouquet::core {

// How an unpinned server picks its span on joining: the core's greedy choice
// (choose_span_to_join), or a uniformly random one (a baseline for experiments).
enum class JoinPlacement { greedy, random };

struct BalancerNodeConfig {
  PeerId peer;
  std::string address;  // as announced (--announce-addr)
  std::string model_id;
  uint32_t model_blocks = 0;        // blocks of the model
  uint32_t num_blocks = 0;          // blocks to hold (--num-blocks), when not pinned
  std::optional<BlockSpan> blocks;  // --blocks A:B: pinned, never moves
  double throughput_rps = 0;        // announced (throughput.h)
  double inference_rps = 0;
  uint64_t cache_tokens_free = 0;
  std::string version = "bouquet 0.1";
  std::vector<std::string> adapters;
  double join_delay_s = 5;
  double balance_period_s = 60;
  double balance_quality = 0.75;
  double update_period_s = 60;
  uint64_t seed = 0;  // the node's Rng (join delay, balance period, rebalance simulation)
  JoinPlacement placement = JoinPlacement::greedy;
};

class BalancerNode {
 public:
  enum class Phase { idle, waiting_to_join, looking_up, loading, online, stopped };
  static constexpr TimerId kJoinTimer = 1, kBalanceTimer = 2, kAnnounceTimer = 3;

  explicit BalancerNode(BalancerNodeConfig config);

  void start(Time now, std::vector<Effect>& out);
  // A clean shutdown: announces offline, then ignores everything.
  void stop(Time now, std::vector<Effect>& out);
  // TimerFired, DirectoryAnswer and SpanLoaded; anything else is ignored.
  void handle(Time now, const Input& in, std::vector<Effect>& out);
  // The driver's current free cache, for the next announcements.
  void set_cache_tokens_free(uint64_t tokens) { config_.cache_tokens_free = tokens; }
  void set_load(const ServerLoad& load) { load_ = load; }

  Phase phase() const { return phase_; }
  // The span served now (none before the first SpanLoaded and while moving).
  std::optional<BlockSpan> span() const { return span_; }
  // The span being loaded or served.
  std::optional<BlockSpan> target() const { return target_; }
  uint64_t moves() const { return moves_; }
  const std::optional<RebalanceDecision>& last_decision() const { return last_decision_; }
  const BalancerNodeConfig& config() const { return config_; }

 private:
  void look_up(std::vector<Effect>& out);
  void on_answer(Time now, const DirectoryAnswer& answer, std::vector<Effect>& out);
  void on_loaded(Time now, BlockSpan span, std::vector<Effect>& out);
  void move_to(Time now, BlockSpan span, std::vector<Effect>& out);
  void arm_balance(Time now, std::vector<Effect>& out);
  void announce(Time now, BlockSpan span, ServerState state, std::vector<Effect>& out) const;
  void announce_current(Time now, std::vector<Effect>& out) const;

  BalancerNodeConfig config_;
  Rng rng_;
  Phase phase_ = Phase::idle;
  std::optional<BlockSpan> span_;
  std::optional<BlockSpan> target_;
  uint64_t lookup_id_ = 0;  // the lookup awaited; 0 for none
  uint64_t next_lookup_id_ = 1;
  uint64_t moves_ = 0;
  std::optional<RebalanceDecision> last_decision_;
  ServerLoad load_;  // announced with every record (set_load)
};

std::string_view to_string(BalancerNode::Phase phase);

}  // namespace bouquet::core

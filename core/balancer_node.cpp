#include "core/balancer_node.h"

#include <algorithm>

#include "core/check.h"

namespace bouquet::core {

BalancerNode::BalancerNode(BalancerNodeConfig config) : config_(std::move(config)), rng_(config_.seed) {
  BOUQUET_CHECK(config_.model_blocks > 0, "BalancerNodeConfig needs the model's block count");
  if (config_.blocks) {
    BOUQUET_CHECK(!config_.blocks->empty() && config_.blocks->end <= config_.model_blocks,
                  "a pinned span must lie within the model's blocks");
  } else {
    BOUQUET_CHECK(config_.num_blocks > 0 && config_.num_blocks <= config_.model_blocks,
                  "num_blocks must be between 1 and the model's block count");
  }
}

void BalancerNode::start(Time now, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::idle, "BalancerNode started twice");
  out.push_back(SetTimer{kAnnounceTimer, now + config_.update_period_s});
  if (config_.blocks) return move_to(now, *config_.blocks, out);
  phase_ = Phase::waiting_to_join;
  out.push_back(SetTimer{kJoinTimer, now + rng_.uniform(0, config_.join_delay_s)});
}

void BalancerNode::stop(Time now, std::vector<Effect>& out) {
  if (phase_ == Phase::stopped) return;
  if (target_) announce(now, *target_, ServerState::offline, out);
  for (TimerId t : {kJoinTimer, kBalanceTimer, kAnnounceTimer}) out.push_back(CancelTimer{t});
  phase_ = Phase::stopped;
  lookup_id_ = 0;
}

void BalancerNode::handle(Time now, const Input& in, std::vector<Effect>& out) {
  if (phase_ == Phase::idle || phase_ == Phase::stopped) return;
  if (auto* timer = std::get_if<TimerFired>(&in)) {
    if (timer->timer == kAnnounceTimer) {
      announce_current(now, out);
      out.push_back(SetTimer{kAnnounceTimer, now + config_.update_period_s});
    } else if (timer->timer == kJoinTimer && phase_ == Phase::waiting_to_join) {
      phase_ = Phase::looking_up;
      look_up(out);
    } else if (timer->timer == kBalanceTimer && phase_ == Phase::online) {
      look_up(out);
    }
  } else if (auto* answer = std::get_if<DirectoryAnswer>(&in)) {
    if (answer->lookup_id == lookup_id_ && lookup_id_ != 0) {
      lookup_id_ = 0;
      on_answer(now, *answer, out);
    }
  } else if (auto* loaded = std::get_if<SpanLoaded>(&in)) {
    on_loaded(now, loaded->span, out);
  }
}

void BalancerNode::look_up(std::vector<Effect>& out) {
  lookup_id_ = next_lookup_id_++;
  out.push_back(DirectoryLookup{lookup_id_, config_.model_id, BlockSpan{0, config_.model_blocks}});
}

void BalancerNode::on_answer(Time now, const DirectoryAnswer& answer, std::vector<Effect>& out) {
  std::vector<PlacedServer> servers = placed_servers(answer.records, config_.model_id, now);
  std::erase_if(servers, [&](const PlacedServer& s) { return s.peer == config_.peer; });
  if (phase_ == Phase::looking_up) {
    if (config_.placement == JoinPlacement::random) {
      return move_to(now, choose_span_at_random(config_.model_blocks, config_.num_blocks, rng_), out);
    }
    return move_to(now, choose_span_to_join(servers, config_.model_blocks, config_.num_blocks), out);
  }
  if (phase_ != Phase::online || !span_) return;
  // What the directory says about this server may be stale: its own state is the truth.
  // placed_servers gives them in peer order, one per peer: this server goes where it belongs.
  const PlacedServer self{config_.peer, *span_, config_.throughput_rps, config_.blocks.has_value()};
  servers.insert(std::lower_bound(servers.begin(), servers.end(), self,
                                  [](const auto& a, const auto& b) { return a.peer < b.peer; }),
                 self);
  last_decision_ =
      decide_rebalance(servers, config_.model_blocks, config_.peer, RebalanceConfig{config_.balance_quality}, rng_);
  if (!last_decision_->move) return arm_balance(now, out);
  ++moves_;
  announce(now, *span_, ServerState::offline, out);
  move_to(now, last_decision_->span, out);
}

void BalancerNode::move_to(Time now, BlockSpan span, std::vector<Effect>& out) {
  span_.reset();
  target_ = span;
  phase_ = Phase::loading;
  out.push_back(MoveToSpan{span});
  announce(now, span, ServerState::joining, out);
}

void BalancerNode::on_loaded(Time now, BlockSpan span, std::vector<Effect>& out) {
  if (phase_ != Phase::loading || span != target_) return;  // a stale load: a later move replaced it
  span_ = span;
  phase_ = Phase::online;
  announce(now, span, ServerState::online, out);
  if (!config_.blocks && config_.balance_quality > 0) arm_balance(now, out);
}

void BalancerNode::arm_balance(Time now, std::vector<Effect>& out) {
  out.push_back(SetTimer{kBalanceTimer, now + config_.balance_period_s * rng_.uniform(0.5, 1.5)});
}

void BalancerNode::announce(Time now, BlockSpan span, ServerState state, std::vector<Effect>& out) const {
  ServerRecord r;
  r.peer = config_.peer;
  r.address = config_.address;
  r.span = span;
  r.state = state;
  r.throughput_rps = config_.throughput_rps;
  r.inference_rps = config_.inference_rps;
  r.cache_tokens_free = config_.cache_tokens_free;
  r.load = load_;
  r.model_id = config_.model_id;
  r.version = config_.version;
  r.adapters = config_.adapters;
  r.expires_at = now + 2 * config_.update_period_s;
  out.push_back(Announce{std::move(r)});
}

void BalancerNode::announce_current(Time now, std::vector<Effect>& out) const {
  if (phase_ == Phase::online)
    announce(now, *span_, ServerState::online, out);
  else if (phase_ == Phase::loading)
    announce(now, *target_, ServerState::joining, out);
}

std::string_view to_string(BalancerNode::Phase phase) {
  switch (phase) {
    case BalancerNode::Phase::idle:
      return "idle";
    case BalancerNode::Phase::waiting_to_join:
      return "waiting_to_join";
    case BalancerNode::Phase::looking_up:
      return "looking_up";
    case BalancerNode::Phase::loading:
      return "loading";
    case BalancerNode::Phase::online:
      return "online";
    case BalancerNode::Phase::stopped:
      return "stopped";
  }
  return "unknown";
}

}  // namespace bouquet::core

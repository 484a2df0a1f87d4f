// InferenceSession: what happens when a hop fails (recovery.h, inference_session.h).
#include "core/inference_session.h"

#include <fmt/core.h>
#include <algorithm>

namespace bouquet::core {

void InferenceSession::fail_hop(Time now, size_t hop, Error error, std::vector<Effect>& out) {
  HopState& h = hops_[hop];
  if (h.dead) return;
  const PeerId peer = chain_[hop].peer;
  error.message =
      fmt::format("server {} (blocks {}): {}", peer.to_string(), chain_[hop].span.to_string(), error.message);
  if (config_.recovery == RecoveryPolicy::none) return fail(std::move(error), out);
  // A server that closed the session for idling (a chat whose user thinks between turns) is
  // healthy: it may take the span again at once, so the replay need not wait for a ban to end.
  if (error.code != ErrorCode::session_closed) bans_.ban(peer, now);
  auto drop = [&](HopState& x) {
    x.dead = true;
    if (x.open_sent && !x.closed) {
      out.push_back(SendMessage{chain_[&x - hops_.data()].peer, CloseSession{x.session_id}});
      x.closed = true;
    }
  };
  drop(h);
  h.failure = std::move(error);
  h.failed_at = now;
  if (pending_ && pending_->hop == hop) pending_.reset();  // its reply, should it come, is ignored
  if (starts_over()) {
    // Start over on a fresh chain: every other server's cache is useless now.
    for (HopState& other : hops_) drop(other);
    pending_.reset();
  }
  if (check_ && hops_[check_->hop].dead) abandon_check(out);  // the reply it held is moot
  // Under restart_from_scratch a failure during a step loses the generation now; one between
  // steps loses it when the next step comes (a generation that already ended loses nothing).
  if (config_.recovery == RecoveryPolicy::restart_from_scratch && phase_ == Phase::stepping) {
    return restart_from_scratch(now, out);
  }
  advance(now, out);
}

// restart_from_scratch once the session was ready: nothing generated survives. The session
// re-opens on a fresh chain (a replacement of every hop, with an empty history) and the loop
// starts again from position 0 after the next SessionReady.
void InferenceSession::restart_from_scratch(Time now, std::vector<Effect>& out) {
  const uint32_t lost = length_;
  for (HopState& h : hops_) h.history.truncate(0);
  final_outputs_.clear();
  length_ = 0;
  step_.reset();
  phase_ = Phase::opening;
  start_replacement(now, 0, hops_.size(), out);
  recoveries_.back().positions_replayed = lost;
  out.push_back(SessionRestarted{config_.session_id, lost});
}

void InferenceSession::start_replacement(Time now, size_t first, size_t last, std::vector<Effect>& out) {
  BOUQUET_CHECK(!replacement_ && first < last && last <= hops_.size(), "one replacement at a time");
  size_t failed = first;
  while (failed < last && !hops_[failed].failure) ++failed;
  BOUQUET_CHECK(failed < last, "replacing hops none of which failed");
  Recovery r;
  r.span = BlockSpan{chain_[first].span.begin, chain_[last - 1].span.end};
  r.failed_peer = chain_[failed].peer;
  r.cause = *hops_[failed].failure;
  r.failed_at = hops_[failed].failed_at;
  recoveries_.push_back(r);
  replacement_ =
      Replacement{first, last, r.span, recoveries_.size() - 1, r.failed_at + config_.recovery_deadline_s, kNever};
  plan_replacement(now, out);
}

void InferenceSession::plan_replacement(Time now, std::vector<Effect>& out) {
  replacement_->retry_at = kNever;  // until the answer says otherwise
  PlanRoute plan{++route_id_,
                 config_.model_id,
                 replacement_->blocks,
                 avoided(now),
                 uint64_t{config_.batch} * config_.max_length,
                 config_.adapter};
  plan.read_directory = true;  // who is there now: the failed server's span may have moved
  out.push_back(std::move(plan));
}

void InferenceSession::on_replacement_route(Time now, const RoutePlanned& route, std::vector<Effect>& out) {
  if (!replacement_ || route.route_id != route_id_ || replacement_->retry_at != kNever) return;
  if (route.chain.ok() && chain_covers(route.chain.value(), replacement_->blocks)) {
    return splice(now, route.chain.value(), out);
  }
  const Error why = route.chain.ok() ? Error{ErrorCode::no_route, "the planned chain does not cover those blocks"}
                                     : route.chain.error();
  if (now >= replacement_->deadline) {
    const Recovery& r = recoveries_[replacement_->recovery];
    return fail(Error{ErrorCode::no_route,
                      fmt::format("no server could take over blocks {} within {} s of server {} failing ({}); "
                                  "last route: {}",
                                  r.span.to_string(), config_.recovery_deadline_s, r.failed_peer.to_string(),
                                  r.cause.to_string(), why.message)},
                out);
  }
  // Routing may find a way when a ban ends (a server that only covers these blocks), or when
  // the directory learns of a new server: look again then, or every route_retry_s.
  Time retry = std::min(now + config_.route_retry_s, replacement_->deadline);
  if (auto ban_ends = bans_.next_expiry(now)) retry = std::min(retry, *ban_ends);
  replacement_->retry_at = retry;
}

// Replaces the dead hops [first, last) by `replacement`: the first new hop inherits their inputs
// (the history to replay), every new hop opens a fresh session; the step then feeds them from
// position 0 while the other hops keep their caches.
void InferenceSession::splice(Time now, const Chain& replacement, std::vector<Effect>& out) {
  const Replacement rep = *replacement_;
  replacement_.reset();
  Recovery& r = recoveries_[rep.recovery];
  r.replacement = replacement;
  if (config_.recovery != RecoveryPolicy::restart_from_scratch && r.positions_replayed == 0) {
    r.positions_replayed = step_ ? step_->start_position : length_;
  }
  std::vector<HopState> fresh(replacement.size());
  fresh[0].history = std::move(hops_[rep.first].history);
  for (auto& h : fresh) h.recovery = rep.recovery;
  chain_.erase(chain_.begin() + rep.first, chain_.begin() + rep.last);
  chain_.insert(chain_.begin() + rep.first, replacement.begin(), replacement.end());
  hops_.erase(hops_.begin() + rep.first, hops_.begin() + rep.last);
  hops_.insert(hops_.begin() + rep.first, std::make_move_iterator(fresh.begin()), std::make_move_iterator(fresh.end()));
  if (pending_ && pending_->hop >= rep.last)
    pending_->hop = pending_->hop + replacement.size() - (rep.last - rep.first);
  for (size_t k = rep.first; k < rep.first + replacement.size(); ++k) open_hop(now, k, out);
  advance(now, out);
}

// A recovery is over once every hop it brought in holds what the session has sent so far.
void InferenceSession::update_recoveries(Time now) {
  for (size_t i = 0; i < recoveries_.size(); ++i) {
    Recovery& r = recoveries_[i];
    if (r.finished_at != kNever || r.replacement.empty()) continue;
    bool any = false, caught_up = true;
    for (const HopState& h : hops_) {
      if (h.recovery != i) continue;
      any = true;
      caught_up &= !h.dead && h.opened && (!step_ || h.acked >= step_->end());
    }
    if (any && caught_up) {
      r.finished_at = now;
      r.succeeded = true;
    }
  }
}

}  // namespace bouquet::core

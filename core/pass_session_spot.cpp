// PassSession: spot checks of forward replies (spot_check.h, pass_session.h). A forward is
// stateless on the server, so a checker gets exactly the request the checked hop got.
#include <fmt/core.h>
#include <algorithm>

#include "core/pass_session.h"

namespace bouquet::core {

std::vector<PeerId> PassSession::avoided(Time now) const {
  std::set<PeerId> peers(liars_.begin(), liars_.end());
  peers.insert(impostors_.begin(), impostors_.end());
  for (PeerId peer : bans_.active(now)) peers.insert(peer);
  return {peers.begin(), peers.end()};
}

// Draws whether the forward reply of the sub-batch's hop is checked; if so holds it and asks for
// a second server. Nothing is drawn at rate 0.
bool PassSession::start_check(Time now, Sub& sub, const Activation& result, std::vector<Effect>& out) {
  if (config_.spot_check_rate <= 0 || !rng_.bernoulli(config_.spot_check_rate)) return false;
  const Hop& hop = sub.chain.at(sub.hop);
  SpotCheck record;
  record.span = hop.span;
  record.checked = hop.peer;
  record.step_id = forwards_;
  record.begin = 0;
  record.end = tokens_;
  record.started_at = now;
  spot_checks_.push_back(record);
  Check c;
  c.hop = sub.hop;
  c.claimed = result;
  c.claimed.compression = config_.compression;
  c.record = spot_checks_.size() - 1;
  sub.check = std::move(c);
  sub.stage = Stage::checking;
  std::vector<PeerId> avoid = avoided(now);
  avoid.push_back(hop.peer);
  plan_check(now, sub, std::move(avoid), out);
  return true;
}

void PassSession::plan_check(Time now, Sub& sub, std::vector<PeerId> avoid, std::vector<Effect>& out) {
  std::sort(avoid.begin(), avoid.end());
  avoid.erase(std::unique(avoid.begin(), avoid.end()), avoid.end());
  sub.check->run.clear();
  sub.route_id = ++route_id_;
  PlanRoute plan{sub.route_id,    config_.model_id,   spot_checks_[sub.check->record].span, std::move(avoid), 0,
                 config_.adapter, Routing::throughput};
  plan.spot_check = true;
  out.push_back(std::move(plan));
}

void PassSession::on_check_route(Time now, Sub& sub, const RoutePlanned& route, std::vector<Effect>& out) {
  Check& c = *sub.check;
  SpotCheck& record = spot_checks_[c.record];
  if (!route.chain.ok() || !chain_covers(route.chain.value(), record.span)) {
    if (c.second) return reject_checked(now, sub, SpotCheckOutcome::undecided, out);
    return accept_checked(now, sub, SpotCheckOutcome::no_checker, out);
  }
  c.run = route.chain.value();
  (c.second ? record.referee : record.checker) = c.run;
  c.run_hop = 0;
  c.run_x = sub.inputs.at(record.span.begin);
  send_request(now, sub, c.run[0], c.run_x, ForwardRequest{}, out);
}

void PassSession::on_check_reply(Time now, Sub& sub, const Message& message, std::vector<Effect>& out) {
  Check& c = *sub.check;
  sub.request_id = 0;
  sub.deadline = kNever;
  if (auto* error = std::get_if<ErrorReply>(&message)) return check_failed(now, sub, error->error, out);
  auto* result = std::get_if<ForwardResult>(&message);
  const std::vector<uint32_t> expected{sub.rows, tokens_, config_.hidden_size};
  if (!result || result->hidden_states.shape != expected) {
    return check_failed(now, sub, Error{ErrorCode::bad_reply, "spot check reply of the wrong kind or shape"}, out);
  }
  c.run_x = result->hidden_states;
  if (++c.run_hop == c.run.size()) return on_check_done(now, sub, c.run_x, out);
  send_request(now, sub, c.run[c.run_hop], c.run_x, ForwardRequest{}, out);
}

void PassSession::on_check_done(Time now, Sub& sub, const Activation& opinion, std::vector<Effect>& out) {
  Check& c = *sub.check;
  SpotCheck& record = spot_checks_[c.record];
  const double rtol = config_.spot_check_rtol;
  if (!c.second) {
    if (outputs_agree(c.claimed, opinion, config_.compression, rtol)) {
      return accept_checked(now, sub, SpotCheckOutcome::agreed, out);
    }
    c.second = opinion;  // both are suspects until a third server, avoiding them, runs the same request
    std::vector<PeerId> avoid = avoided(now);
    avoid.push_back(record.checked);
    for (const Hop& hop : record.checker) avoid.push_back(hop.peer);
    return plan_check(now, sub, std::move(avoid), out);
  }
  const bool with_checked = outputs_agree(c.claimed, opinion, config_.compression, rtol);
  const bool with_checker = outputs_agree(*c.second, opinion, config_.compression, rtol);
  if (with_checker && !with_checked) {
    record.liar = record.checked;
    return reject_checked(now, sub, SpotCheckOutcome::liar_found, out);
  }
  if (with_checked && !with_checker) {
    if (record.checker.size() == 1) {
      record.liar = record.checker[0].peer;
      liars_.insert(record.checker[0].peer);
    } else {
      for (const Hop& hop : record.checker) bans_.ban(hop.peer, now);
    }
    return accept_checked(now, sub, SpotCheckOutcome::checker_lied, out);
  }
  for (const Hop& hop : record.checker) bans_.ban(hop.peer, now);
  reject_checked(now, sub, SpotCheckOutcome::undecided, out);
}

void PassSession::check_failed(Time now, Sub& sub, const Error& cause, std::vector<Effect>& out) {
  bans_.ban(sub.awaiting, now);
  sub.request_id = 0;
  sub.deadline = kNever;
  if (sub.check->second) {
    for (const Hop& hop : spot_checks_[sub.check->record].checker) bans_.ban(hop.peer, now);
    return reject_checked(now, sub, SpotCheckOutcome::undecided, out);
  }
  accept_checked(now, sub, SpotCheckOutcome::checker_failed, out);
}

// The held reply goes on to the next hop.
void PassSession::accept_checked(Time now, Sub& sub, SpotCheckOutcome outcome, std::vector<Effect>& out) {
  const Check c = std::move(*sub.check);
  sub.check.reset();
  spot_checks_[c.record].outcome = outcome;
  spot_checks_[c.record].finished_at = now;
  sub.x = c.claimed;
  sub.hop = c.hop + 1;
  sub.stage = Stage::forward;
  pump(now, sub, out);
}

// The held reply is dropped: a liar's hop (and every sub-batch through it) starts again without
// it; an undecided one is replaced as a failed hop.
void PassSession::reject_checked(Time now, Sub& sub, SpotCheckOutcome outcome, std::vector<Effect>& out) {
  const Check c = std::move(*sub.check);
  sub.check.reset();
  SpotCheck& record = spot_checks_[c.record];
  record.outcome = outcome;
  record.finished_at = now;
  sub.hop = c.hop;
  sub.x = sub.inputs.at(sub.chain.at(c.hop).span.begin);
  sub.stage = Stage::forward;
  if (outcome == SpotCheckOutcome::liar_found) {
    liars_.insert(record.checked);
    return forward_again_without(now, record.checked, out);
  }
  fail_hop(now, sub, Error{ErrorCode::bad_reply, "a spot check disagreed and a third server settled nothing"}, out);
}

// Every sub-batch of this forward whose chain has the liar goes again from its input, on a chain
// planned without it: what the liar said never reaches ForwardDone.
void PassSession::forward_again_without(Time now, PeerId liar, std::vector<Effect>& out) {
  for (Sub& sub : subs_) {
    const bool through = std::any_of(sub.chain.begin(), sub.chain.end(), [&](const Hop& h) { return h.peer == liar; });
    const bool movable = sub.stage == Stage::forward || sub.stage == Stage::checking || sub.stage == Stage::done;
    if (!through || !movable || !sub.inputs.count(0)) continue;
    if (sub.check) {
      spot_checks_[sub.check->record].outcome = SpotCheckOutcome::abandoned;
      sub.check.reset();
    }
    sub.x = sub.inputs.at(0);
    sub.inputs.clear();
    sub.chain.clear();
    sub.hop = 0;
    sub.request_id = 0;
    sub.deadline = kNever;
    sub.stage = Stage::routing;
    sub.route_id = ++route_id_;
    out.push_back(PlanRoute{sub.route_id, config_.model_id, BlockSpan{0, config_.num_blocks}, avoided(now), 0,
                            config_.adapter, Routing::throughput});
  }
}

}  // namespace bouquet::core

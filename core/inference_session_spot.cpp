// InferenceSession: spot checks (spot_check.h, inference_session.h).
#include <fmt/core.h>
#include <algorithm>

#include "core/inference_session.h"
#include "core/positions.h"

namespace bouquet::core {

std::vector<PeerId> InferenceSession::avoided(Time now) const {
  std::set<PeerId> peers(liars_.begin(), liars_.end());
  peers.insert(impostors_.begin(), impostors_.end());
  for (PeerId peer : bans_.active(now)) peers.insert(peer);
  return {peers.begin(), peers.end()};
}

// Draws whether the reply of `hop` for [begin, end) is checked; if so holds it and asks for a
// second server. Only replies that complete the step are drawn (catch-up messages of a replay
// are not steps), and nothing is drawn at rate 0, so the Rng stream is untouched then.
bool InferenceSession::start_check(Time now, size_t hop, uint32_t begin, uint32_t end, const Activation& outputs,
                                   std::vector<Effect>& out) {
  if (config_.spot_check_rate <= 0 || !step_ || end != step_->end()) return false;
  if (!rng_.bernoulli(config_.spot_check_rate)) return false;
  Check c;
  c.hop = hop;
  c.begin = begin;
  c.end = end;
  c.claimed = outputs;
  c.claimed.compression = config_.compression;
  const PositionLog& history = hops_[hop].history;
  BOUQUET_CHECK(history.covers(0, end), "a checked hop's history misses positions");
  for (uint32_t at = 0; at < end;) {  // the inputs as they were sent, merged where they can be
    Activation part = history.take(at, end, end - at);
    const uint32_t next = at + token_count(part);
    c.inputs.put(at, std::move(part));
    at = next;
  }
  SpotCheck record;
  record.span = chain_[hop].span;
  record.checked = chain_[hop].peer;
  record.step_id = step_->step_id;
  record.begin = begin;
  record.end = end;
  record.started_at = now;
  spot_checks_.push_back(record);
  c.record = spot_checks_.size() - 1;
  check_ = std::move(c);
  std::vector<PeerId> avoid = avoided(now);
  avoid.push_back(chain_[hop].peer);
  plan_check_run(now, std::move(avoid), out);
  return true;
}

void InferenceSession::plan_check_run(Time now, std::vector<PeerId> avoid, std::vector<Effect>& out) {
  std::sort(avoid.begin(), avoid.end());
  avoid.erase(std::unique(avoid.begin(), avoid.end()), avoid.end());
  CheckRun run;
  run.route_id = ++route_id_;
  run.inputs = check_->inputs;
  check_->run = std::move(run);
  PlanRoute plan{check_->run.route_id,
                 config_.model_id,
                 spot_checks_[check_->record].span,
                 std::move(avoid),
                 uint64_t{config_.batch} * check_->end,
                 config_.adapter};
  plan.spot_check = true;
  out.push_back(std::move(plan));
}

void InferenceSession::on_check_route(Time now, const RoutePlanned& route, std::vector<Effect>& out) {
  CheckRun& run = check_->run;
  run.route_id = 0;
  const BlockSpan span = spot_checks_[check_->record].span;
  if (!route.chain.ok() || !chain_covers(route.chain.value(), span)) {
    // No other server: the reply goes on unchecked; a missing referee leaves the mismatch open.
    if (check_->second) return reject_checked(now, SpotCheckOutcome::undecided, "no third server to decide", out);
    return accept_checked(now, SpotCheckOutcome::no_checker, out);
  }
  run.chain = route.chain.value();
  (check_->second ? spot_checks_[check_->record].referee : spot_checks_[check_->record].checker) = run.chain;
  run.open_deadline = now + config_.cache_wait_timeout_s + config_.reply_timeout_s;
  for (const Hop& hop : run.chain) {
    OpenSession open;
    open.session_id = config_.session_id + hop_sessions_opened_++;
    open.model_id = config_.model_id;
    open.span = hop.span;
    open.max_length = check_->end;
    open.batch = config_.batch;
    open.reply_compression = config_.compression;
    open.cache_wait_timeout_s = config_.cache_wait_timeout_s;
    open.adapter = config_.adapter;
    run.session_ids.push_back(open.session_id);
    run.opened.push_back(false);
    out.push_back(SendMessage{hop.peer, std::move(open)});
  }
  run.deadline = run.open_deadline;
}

// Replies of the checker's sessions; false for any other message.
bool InferenceSession::on_check_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out) {
  if (!check_) return false;
  CheckRun& run = check_->run;
  auto hop_of = [&](uint64_t session_id) -> std::optional<size_t> {
    for (size_t k = 0; k < run.session_ids.size(); ++k) {
      if (run.chain[k].peer == from && run.session_ids[k] == session_id) return k;
    }
    return std::nullopt;
  };
  if (auto* opened = std::get_if<SessionOpened>(&message)) {
    auto k = hop_of(opened->session_id);
    if (!k) return false;
    run.opened[*k] = true;
    if (*k == run.hop && run.message_id == 0) pump_check(now, out);
    return true;
  }
  if (auto* result = std::get_if<StepResult>(&message)) {
    auto k = hop_of(result->session_id);
    if (!k) return false;
    if (*k != run.hop || result->step_id != run.message_id) return true;  // stale
    const std::vector<uint32_t> shape{config_.batch, run.sent_end - run.acked, config_.hidden_size};
    if (result->start_position != run.acked || result->hidden_states.shape != shape) {
      check_run_failed(now, from, Error{ErrorCode::bad_reply, "spot check result of the wrong position or shape"}, out);
      return true;
    }
    Activation part = result->hidden_states;
    part.compression = config_.compression;
    run.outputs.put(run.acked, std::move(part));
    run.acked = run.sent_end;
    run.message_id = 0;
    pump_check(now, out);
    return true;
  }
  if (auto* error = std::get_if<ErrorReply>(&message)) {
    auto k = hop_of(error->request_id);
    if (!k) return false;
    if (error->step_id == 0 || (*k == run.hop && error->step_id == run.message_id)) {
      check_run_failed(now, from, error->error, out);
    }
    return true;
  }
  return false;
}

// Feeds the checker hop being fed its next positions; moves to the next checker hop (its outputs
// as inputs) when it has answered them all; the last one's outputs for the step are the opinion.
void InferenceSession::pump_check(Time now, std::vector<Effect>& out) {
  CheckRun& run = check_->run;
  while (run.acked >= check_->end) {
    if (run.hop + 1 == run.chain.size()) {
      const Activation opinion = run.outputs.take(check_->begin, check_->end, check_->end - check_->begin);
      return on_check_run_done(now, opinion, out);
    }
    run.inputs = std::move(run.outputs);
    run.outputs = PositionLog{};
    run.acked = 0;
    ++run.hop;
  }
  if (!run.opened[run.hop]) {
    run.deadline = run.open_deadline;
    return;
  }
  Activation chunk = run.inputs.take(run.acked, check_->end, step_tokens_max());
  run.sent_end = run.acked + token_count(chunk);
  run.message_id = next_message_id_++;
  run.deadline = now + config_.reply_timeout_s;
  out.push_back(SendMessage{
      run.chain[run.hop].peer,
      StepRequest{run.session_ids[run.hop], run.message_id, run.acked, std::move(chunk), std::nullopt, {}}});
}

void InferenceSession::on_check_run_done(Time now, const Activation& opinion, std::vector<Effect>& out) {
  Check& c = *check_;
  SpotCheck& record = spot_checks_[c.record];
  if (!c.second) {
    if (outputs_agree(c.claimed, opinion, config_.compression, config_.spot_check_rtol)) {
      return accept_checked(now, SpotCheckOutcome::agreed, out);
    }
    // Both are suspects until a third server, avoiding them, runs the same inputs.
    c.second = opinion;
    close_check_run(out);
    std::vector<PeerId> avoid = avoided(now);
    avoid.push_back(record.checked);
    for (const Hop& hop : record.checker) avoid.push_back(hop.peer);
    return plan_check_run(now, std::move(avoid), out);
  }
  const bool with_checked = outputs_agree(c.claimed, opinion, config_.compression, config_.spot_check_rtol);
  const bool with_checker = outputs_agree(*c.second, opinion, config_.compression, config_.spot_check_rtol);
  if (with_checker && !with_checked) {
    record.liar = record.checked;
    liars_.insert(record.checked);
    return reject_checked(now, SpotCheckOutcome::liar_found,
                          "a spot check found its outputs wrong (two other servers agreed on different ones)", out);
  }
  if (with_checked && !with_checker) {
    // One checker server: it lied. Several: which of them is unknown, so each gets a plain ban.
    if (record.checker.size() == 1) {
      record.liar = record.checker[0].peer;
      liars_.insert(record.checker[0].peer);
    } else {
      for (const Hop& hop : record.checker) bans_.ban(hop.peer, now);
    }
    return accept_checked(now, SpotCheckOutcome::checker_lied, out);
  }
  for (const Hop& hop : record.checker) bans_.ban(hop.peer, now);
  reject_checked(now, SpotCheckOutcome::undecided, "a spot check disagreed and a third server settled nothing", out);
}

void InferenceSession::check_run_failed(Time now, PeerId peer, const Error& error, std::vector<Effect>& out) {
  bans_.ban(peer, now);
  if (check_->second) {
    for (const Hop& hop : spot_checks_[check_->record].checker) bans_.ban(hop.peer, now);
    return reject_checked(now, SpotCheckOutcome::undecided,
                          fmt::format("a spot check disagreed and the third server failed ({})", error.to_string()),
                          out);
  }
  accept_checked(now, SpotCheckOutcome::checker_failed, out);
}

// The held reply goes on as if it had just arrived.
void InferenceSession::accept_checked(Time now, SpotCheckOutcome outcome, std::vector<Effect>& out) {
  close_check_run(out);
  const Check c = std::move(*check_);
  check_.reset();
  spot_checks_[c.record].outcome = outcome;
  spot_checks_[c.record].finished_at = now;
  HopState& h = hops_[c.hop];
  if (outcome != SpotCheckOutcome::agreed && outcome != SpotCheckOutcome::checker_lied) {
    h.unverified_from = std::min(h.unverified_from.value_or(c.begin), c.begin);
  }
  record_output(c.hop, c.begin, c.end, c.claimed);
  update_recoveries(now);
  pump(now, out);
}

// The held reply is dropped and its hop replaced as a failed one. When a liar's unchecked outputs
// went on before (to later hops, and to the loop, which sampled from them), nothing generated
// since can be trusted: the session starts over from scratch on a chain without the liar
// (SessionRestarted), whatever the recovery policy, unless that policy is `none`.
void InferenceSession::reject_checked(Time now, SpotCheckOutcome outcome, std::string why, std::vector<Effect>& out) {
  close_check_run(out);
  const Check c = std::move(*check_);
  check_.reset();
  SpotCheck& record = spot_checks_[c.record];
  const uint32_t from = std::min(hops_[c.hop].unverified_from.value_or(c.begin), c.begin);
  record.outcome = outcome;
  record.finished_at = now;
  record.unverified_from = from;
  hops_[c.hop].acked = c.begin;  // its reply is not taken: the step still needs those positions from its span
  Error error{ErrorCode::bad_reply, std::move(why)};
  if (outcome != SpotCheckOutcome::liar_found || from == c.begin || config_.recovery == RecoveryPolicy::none) {
    return fail_hop(now, c.hop, std::move(error), out);
  }
  error.message = fmt::format("server {} (blocks {}): {}", chain_[c.hop].peer.to_string(),
                              chain_[c.hop].span.to_string(), error.message);
  bans_.ban(chain_[c.hop].peer, now);
  for (size_t i = 0; i < hops_.size(); ++i) {
    HopState& h = hops_[i];
    h.dead = true;
    if (h.open_sent && !h.closed) {
      out.push_back(SendMessage{chain_[i].peer, CloseSession{h.session_id}});
      h.closed = true;
    }
  }
  hops_[c.hop].failure = std::move(error);
  hops_[c.hop].failed_at = now;
  restart_from_scratch(now, out);
}

void InferenceSession::abandon_check(std::vector<Effect>& out) {
  if (!check_) return;
  close_check_run(out);
  spot_checks_[check_->record].outcome = SpotCheckOutcome::abandoned;
  check_.reset();
}

void InferenceSession::close_check_run(std::vector<Effect>& out) {
  CheckRun& run = check_->run;
  for (size_t k = 0; k < run.session_ids.size(); ++k) {
    out.push_back(SendMessage{run.chain[k].peer, CloseSession{run.session_ids[k]}});
  }
  run.session_ids.clear();
  run.deadline = kNever;
  run.message_id = 0;
}

}  // namespace bouquet::core

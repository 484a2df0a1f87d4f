#include "core/inference_session.h"

#include <fmt/core.h>
#include <algorithm>

#include "core/positions.h"
#include "core/wire.h"

namespace bouquet::core {

InferenceSession::InferenceSession(InferenceSessionConfig config)
    : config_(std::move(config)), bans_(config_.bans), rng_(Rng(config_.session_id).derive(0x73706f74)) {
  BOUQUET_CHECK(config_.num_blocks > 0 && config_.hidden_size > 0 && config_.max_length > 0 && config_.batch > 0,
                "InferenceSessionConfig needs blocks, hidden size, max length and batch");
  BOUQUET_CHECK(config_.spot_check_rate >= 0 && config_.spot_check_rate <= 1 && config_.spot_check_rtol >= 0,
                "InferenceSessionConfig spot_check_rate must be in [0, 1] and spot_check_rtol >= 0");
}

const std::map<uint32_t, Activation>& InferenceSession::history(size_t hop) const {
  BOUQUET_CHECK(hop < hops_.size(), "history of a hop the chain does not have");
  return hops_[hop].history.entries();
}

void InferenceSession::handle(Time now, const Input& in, std::vector<Effect>& out) {
  if (phase_ == Phase::closed || phase_ == Phase::failed) return;
  if (std::holds_alternative<OpenRequested>(in)) {
    on_open_requested(now, out);
  } else if (auto* route = std::get_if<RoutePlanned>(&in)) {
    if (check_ && check_->run.route_id != 0 && route->route_id == check_->run.route_id)
      on_check_route(now, *route, out);
    else if (phase_ == Phase::routing)
      on_route(now, *route, out);
    else
      on_replacement_route(now, *route, out);
  } else if (auto* step = std::get_if<StepRequested>(&in)) {
    on_step_requested(now, *step, out);
  } else if (auto* m = std::get_if<MessageReceived>(&in)) {
    if (!on_check_message(now, m->from, m->message, out)) on_message(now, m->from, m->message, out);
  } else if (auto* gone = std::get_if<PeerUnreachable>(&in)) {
    fail_peer(now, gone->peer, Error{ErrorCode::peer_unreachable, gone->reason}, out);
  } else if (auto* refused = std::get_if<IdentityRefused>(&in)) {
    // Not who its record says: avoided for the rest of the session, whatever its bans say.
    impostors_.insert(refused->peer);
    fail_peer(now, refused->peer, Error{ErrorCode::identity_refused, refused->reason}, out);
  } else if (auto* timer = std::get_if<TimerFired>(&in)) {
    if (timer->timer == kDeadlineTimer) on_timer(now, out);
  } else if (std::holds_alternative<CloseRequested>(in)) {
    on_close_requested(out);
  }
  if (phase_ != Phase::closed && phase_ != Phase::failed) rearm(out);
}

// Every hop and check run on `peer` fails with `error`.
void InferenceSession::fail_peer(Time now, PeerId peer, const Error& error, std::vector<Effect>& out) {
  if (check_ && std::any_of(check_->run.chain.begin(), check_->run.chain.end(),
                            [&](const Hop& hop) { return hop.peer == peer; })) {
    check_run_failed(now, peer, error, out);
  }
  for (size_t i = 0; i < hops_.size() && phase_ != Phase::failed; ++i) {
    if (chain_[i].peer == peer && !hops_[i].dead) fail_hop(now, i, error, out);
  }
}

void InferenceSession::on_open_requested(Time now, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::idle, "OpenRequested twice");
  phase_ = Phase::routing;
  out.push_back(PlanRoute{++route_id_,
                          config_.model_id,
                          BlockSpan{0, config_.num_blocks},
                          {},
                          uint64_t{config_.batch} * config_.max_length,
                          config_.adapter});
}

void InferenceSession::on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out) {
  if (route.route_id != route_id_) return;
  if (!route.chain.ok()) return fail(route.chain.error(), out);
  if (!chain_covers(route.chain.value(), BlockSpan{0, config_.num_blocks})) {
    return fail(Error{ErrorCode::no_route, "the planned chain does not cover every block"}, out);
  }
  chain_ = route.chain.value();
  hops_.assign(chain_.size(), HopState{});
  phase_ = Phase::opening;
  for (size_t i = 0; i < chain_.size(); ++i) open_hop(now, i, out);
}

void InferenceSession::open_hop(Time now, size_t hop, std::vector<Effect>& out) {
  HopState& h = hops_[hop];
  h.session_id = config_.session_id + hop_sessions_opened_++;
  OpenSession open;
  open.session_id = h.session_id;
  open.model_id = config_.model_id;
  open.span = chain_[hop].span;
  open.max_length = config_.max_length;
  open.batch = config_.batch;
  open.reply_compression = config_.compression;
  open.cache_wait_timeout_s = config_.cache_wait_timeout_s;
  open.adapter = config_.adapter;
  out.push_back(SendMessage{chain_[hop].peer, std::move(open)});
  h.open_sent = true;
  h.open_deadline = now + config_.cache_wait_timeout_s + config_.reply_timeout_s;
}

void InferenceSession::on_step_requested(Time now, const StepRequested& step, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::ready, "StepRequested while the session is not ready for a step");
  const Activation& h = step.hidden_states;
  BOUQUET_CHECK(
      h.shape.size() == 3 && h.shape[0] == config_.batch && h.shape[1] > 0 && h.shape[2] == config_.hidden_size,
      "StepRequested hidden_states must be [batch, tokens > 0, hidden_size]");
  const uint32_t start = step.start_position.value_or(length_);
  BOUQUET_CHECK(start <= length_, "StepRequested start_position skips past the session's length");
  BOUQUET_CHECK(uint64_t{start} + h.shape[1] <= config_.max_length, "StepRequested runs past the session's max_length");
  if (config_.recovery == RecoveryPolicy::restart_from_scratch &&
      std::any_of(hops_.begin(), hops_.end(), [](const HopState& hop) { return hop.dead; })) {
    return restart_from_scratch(now, out);  // a hop failed since the last step: this step is lost too
  }
  for (auto& hop : hops_) {
    hop.history.truncate(start);
    // Cache-less: every server starts over at position 0 on every step.
    hop.acked = config_.recovery == RecoveryPolicy::cacheless ? 0 : std::min(hop.acked, start);
  }
  Activation sent = h;
  sent.compression = config_.compression;
  hops_[0].history.put(start, std::move(sent));
  final_outputs_.clear();
  length_ = start;
  step_ = CurrentStep{next_step_id_++, start, h.shape[1]};
  phase_ = Phase::stepping;
  pump(now, out);
}

// Sends the next message the step needs, or reports the step done. The first hop whose server
// lacks some of the step's positions gets them next (from its history); a dead one is replaced.
void InferenceSession::pump(Time now, std::vector<Effect>& out) {
  if (phase_ != Phase::stepping || pending_ || replacement_ || check_) return;
  const uint32_t target = step_->end();
  const bool any_dead = std::any_of(hops_.begin(), hops_.end(), [](const HopState& h) { return h.dead; });
  if (starts_over() && any_dead) return start_replacement(now, 0, hops_.size(), out);
  for (size_t j = 0; j < hops_.size(); ++j) {
    HopState& h = hops_[j];
    if (h.acked >= target) continue;
    if (h.dead) return start_replacement(now, j, j + 1, out);
    if (!h.opened) return;  // its SessionOpened (or open deadline) moves things on
    BOUQUET_CHECK(h.history.covers(h.acked, target), "a hop's history misses positions it is to be sent");
    Activation chunk = h.history.take(h.acked, target, step_tokens_max());
    const uint32_t end = h.acked + token_count(chunk);
    pending_ = Pending{j, next_message_id_++, h.acked, end, now, now + config_.reply_timeout_s};
    out.push_back(SendMessage{
        chain_[j].peer, StepRequest{h.session_id, pending_->step_id, h.acked, std::move(chunk), std::nullopt, {}}});
    return;
  }
  Activation outputs = final_outputs_.take(step_->start_position, target, target - step_->start_position);
  length_ = target;
  phase_ = Phase::ready;
  const CurrentStep done = *step_;
  step_.reset();
  update_recoveries(now);
  out.push_back(StepDone{config_.session_id, done.step_id, done.start_position, std::move(outputs)});
}

// A reply of hop `hop` for [begin, end): it is the next hop's input for the positions that hop
// does not hold yet (the last hop's: the step's output).
void InferenceSession::record_output(size_t hop, uint32_t begin, uint32_t end, const Activation& outputs) {
  const bool last = hop + 1 == hops_.size();
  const uint32_t from = last ? step_->start_position : hops_[hop + 1].acked;
  if (end <= from) return;
  Activation part = outputs;
  part.compression = config_.compression;
  if (begin < from) part = slice_tokens(part, from - begin, end - begin);
  (last ? final_outputs_ : hops_[hop + 1].history).put(std::max(begin, from), std::move(part));
}

void InferenceSession::on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out) {
  if (auto* opened = std::get_if<SessionOpened>(&message)) {
    if (auto hop = live_hop(from, opened->session_id)) on_session_opened(now, *hop, out);
  } else if (auto* result = std::get_if<StepResult>(&message)) {
    if (auto hop = live_hop(from, result->session_id)) on_step_result(now, *hop, *result, out);
  } else if (auto* error = std::get_if<ErrorReply>(&message)) {
    auto hop = live_hop(from, error->request_id);
    if (!hop) return;  // not a session of this chain: a late reply from an earlier one
    // An error for another message is stale; one with step id 0 concerns the session itself.
    if (error->step_id != 0 && (!pending_ || pending_->hop != *hop || error->step_id != pending_->step_id)) return;
    fail_hop(now, *hop, error->error, out);
  }
}

void InferenceSession::on_session_opened(Time now, size_t hop, std::vector<Effect>& out) {
  HopState& h = hops_[hop];
  if (h.opened) return;
  h.opened = true;
  h.open_deadline = kNever;
  update_recoveries(now);
  advance(now, out);
}

void InferenceSession::on_step_result(Time now, size_t hop, const StepResult& result, std::vector<Effect>& out) {
  if (!pending_ || pending_->hop != hop || result.step_id != pending_->step_id) return;
  const Pending p = *pending_;
  const std::vector<uint32_t> shape{config_.batch, p.end - p.begin, config_.hidden_size};
  if (result.start_position != p.begin || result.hidden_states.shape != shape) {
    return fail_hop(now, hop, Error{ErrorCode::bad_reply, "step result does not match the step's position or shape"},
                    out);
  }
  pending_.reset();
  if (config_.speeds && p.end - p.begin == 1) {
    config_.speeds->observe_step(now, chain_[hop].peer, chain_[hop].span.size(), now - p.sent_at);
  }
  hops_[hop].acked = p.end;
  bans_.forgive(chain_[hop].peer);
  if (start_check(now, hop, p.begin, p.end, result.hidden_states, out)) return;  // held until checked
  HopState& h = hops_[hop];
  h.unverified_from = std::min(h.unverified_from.value_or(p.begin), p.begin);
  record_output(hop, p.begin, p.end, result.hidden_states);
  update_recoveries(now);
  pump(now, out);
}

// Moves the session on after a hop changed (opened, died, was replaced).
void InferenceSession::advance(Time now, std::vector<Effect>& out) {
  if (phase_ == Phase::stepping) return pump(now, out);
  if (phase_ != Phase::opening || replacement_) return;
  for (size_t i = 0; i < hops_.size(); ++i) {
    if (hops_[i].dead) {
      const bool all = starts_over();
      return start_replacement(now, all ? 0 : i, all ? hops_.size() : i + 1, out);
    }
  }
  if (std::all_of(hops_.begin(), hops_.end(), [](const HopState& h) { return h.opened; })) {
    phase_ = Phase::ready;
    out.push_back(SessionReady{config_.session_id, chain_});
  }
}

void InferenceSession::on_timer(Time now, std::vector<Effect>& out) {
  armed_at_ = kNever;  // it fired
  if (pending_ && pending_->deadline <= now) {
    fail_hop(now, pending_->hop,
             Error{ErrorCode::timeout,
                   fmt::format("no answer to step {} within {} s", pending_->step_id, config_.reply_timeout_s)},
             out);
  }
  for (size_t i = 0; i < hops_.size() && phase_ != Phase::failed; ++i) {
    const HopState& h = hops_[i];
    if (!h.dead && !h.opened && h.open_deadline <= now) {
      fail_hop(now, i, Error{ErrorCode::timeout, "no answer to open_session in time"}, out);
    }
  }
  if (phase_ != Phase::failed && replacement_ && replacement_->retry_at <= now) plan_replacement(now, out);
  if (phase_ != Phase::failed && check_ && check_->run.deadline <= now) {
    const CheckRun& run = check_->run;
    check_run_failed(now, run.chain[std::min(run.hop, run.chain.size() - 1)].peer,
                     Error{ErrorCode::timeout, "no answer to a spot check in time"}, out);
  }
}

void InferenceSession::on_close_requested(std::vector<Effect>& out) {
  close_hops(out);
  phase_ = Phase::closed;
  out.push_back(SessionClosed{config_.session_id});
}

// One timer at the earliest deadline: a reply, an open, a re-plan.
void InferenceSession::rearm(std::vector<Effect>& out) {
  Time next = pending_ ? pending_->deadline : kNever;
  for (const HopState& h : hops_) {
    if (!h.dead && !h.opened) next = std::min(next, h.open_deadline);
  }
  if (replacement_) next = std::min(next, replacement_->retry_at);
  if (check_) next = std::min(next, check_->run.deadline);
  if (next == armed_at_) return;
  if (next == kNever)
    out.push_back(CancelTimer{kDeadlineTimer});
  else
    out.push_back(SetTimer{kDeadlineTimer, next});
  armed_at_ = next;
}

void InferenceSession::fail(Error error, std::vector<Effect>& out) {
  close_hops(out);
  phase_ = Phase::failed;
  out.push_back(SessionFailed{config_.session_id, std::move(error)});
}

void InferenceSession::close_hops(std::vector<Effect>& out) {
  if (armed_at_ != kNever) out.push_back(CancelTimer{kDeadlineTimer});
  armed_at_ = kNever;
  pending_.reset();
  abandon_check(out);
  // Best effort: servers also free the cache on their idle timeout or when we vanish.
  for (size_t i = 0; i < hops_.size(); ++i) {
    if (hops_[i].open_sent && !hops_[i].closed) {
      out.push_back(SendMessage{chain_[i].peer, CloseSession{hops_[i].session_id}});
      hops_[i].closed = true;
    }
  }
}

std::optional<size_t> InferenceSession::live_hop(PeerId peer, uint64_t session_id) const {
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (chain_[i].peer == peer && hops_[i].session_id == session_id && !hops_[i].dead) return i;
  }
  return std::nullopt;
}

uint32_t InferenceSession::step_tokens_max() const {
  if (config_.max_step_tokens > 0) return config_.max_step_tokens;
  const uint64_t per_token = uint64_t{config_.batch} * config_.hidden_size;
  return static_cast<uint32_t>(std::clamp<uint64_t>(WireLimits{}.max_tensor_elements / per_token, 1, UINT32_MAX));
}

std::string_view to_string(InferenceSession::Phase phase) {
  switch (phase) {
    case InferenceSession::Phase::idle:
      return "idle";
    case InferenceSession::Phase::routing:
      return "routing";
    case InferenceSession::Phase::opening:
      return "opening";
    case InferenceSession::Phase::ready:
      return "ready";
    case InferenceSession::Phase::stepping:
      return "stepping";
    case InferenceSession::Phase::closed:
      return "closed";
    case InferenceSession::Phase::failed:
      return "failed";
  }
  return "unknown";
}

}  // namespace bouquet::core

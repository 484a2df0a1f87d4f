#include "core/inference_session.h"

#include <fmt/core.h>

namespace bouquet::core {

InferenceSession::InferenceSession(InferenceSessionConfig config) : config_(std::move(config)) {
  BOUQUET_CHECK(config_.num_blocks > 0 && config_.hidden_size > 0 && config_.max_length > 0 &&
                    config_.batch > 0,
                "InferenceSessionConfig needs blocks, hidden size, max length and batch");
}

const std::map<uint32_t, Activation>& InferenceSession::history(size_t hop) const {
  BOUQUET_CHECK(hop < hops_.size(), "history of a hop the chain does not have");
  return hops_[hop].history;
}

void InferenceSession::handle(Time now, const Input& in, std::vector<Effect>& out) {
  if (phase_ == Phase::closed || phase_ == Phase::failed) return;
  if (std::holds_alternative<OpenRequested>(in)) {
    on_open_requested(now, out);
  } else if (auto* route = std::get_if<RoutePlanned>(&in)) {
    on_route(now, *route, out);
  } else if (auto* step = std::get_if<StepRequested>(&in)) {
    on_step_requested(now, *step, out);
  } else if (auto* m = std::get_if<MessageReceived>(&in)) {
    on_message(now, m->from, m->message, out);
  } else if (auto* gone = std::get_if<PeerUnreachable>(&in)) {
    if (auto hop = hop_of(gone->peer); hop && phase_ != Phase::routing) {
      fail_hop(*hop, Error{ErrorCode::peer_unreachable, gone->reason}, out);
    }
  } else if (auto* timer = std::get_if<TimerFired>(&in)) {
    if (timer->timer != deadline_timer_ || !deadline_armed_) return;
    deadline_armed_ = false;
    if (phase_ == Phase::opening) {
      for (size_t i = 0; i < hops_.size(); ++i) {
        if (!hops_[i].opened) {
          return fail_hop(i, Error{ErrorCode::timeout, "no answer to open_session in time"}, out);
        }
      }
    } else if (phase_ == Phase::stepping) {
      fail_hop(step_->hop, Error{ErrorCode::timeout, fmt::format("no answer to step {} within {} s", step_->step_id, config_.reply_timeout_s)}, out);
    }
  } else if (std::holds_alternative<CloseRequested>(in)) {
    on_close_requested(out);
  }
}

void InferenceSession::on_open_requested(Time now, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::idle, "OpenRequested twice");
  phase_ = Phase::routing;
  out.push_back(PlanRoute{++route_id_, config_.model_id, BlockSpan{0, config_.num_blocks}, {}});
}

void InferenceSession::on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out) {
  if (phase_ != Phase::routing || route.route_id != route_id_) return;
  if (!route.chain.ok()) return fail(route.chain.error(), out);
  if (!chain_covers(route.chain.value(), BlockSpan{0, config_.num_blocks})) {
    return fail(Error{ErrorCode::no_route, "the planned chain does not cover every block"}, out);
  }
  chain_ = route.chain.value();
  hops_.assign(chain_.size(), HopState{});
  phase_ = Phase::opening;
  for (size_t i = 0; i < chain_.size(); ++i) {
    hops_[i].session_id = config_.session_id + hop_sessions_opened_++;
    OpenSession open;
    open.session_id = hops_[i].session_id;
    open.model_id = config_.model_id;
    open.span = chain_[i].span;
    open.max_length = config_.max_length;
    open.batch = config_.batch;
    open.reply_compression = config_.compression;
    open.cache_wait_timeout_s = config_.cache_wait_timeout_s;
    open.adapter = config_.adapter;
    out.push_back(SendMessage{chain_[i].peer, std::move(open)});
    hops_[i].open_sent = true;
  }
  arm_deadline(now + config_.cache_wait_timeout_s + config_.reply_timeout_s, out);
}

void InferenceSession::on_step_requested(Time now, const StepRequested& step, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::ready, "StepRequested while the session is not ready for a step");
  const Activation& h = step.hidden_states;
  BOUQUET_CHECK(h.shape.size() == 3 && h.shape[0] == config_.batch && h.shape[1] > 0 &&
                    h.shape[2] == config_.hidden_size,
                "StepRequested hidden_states must be [batch, tokens > 0, hidden_size]");
  const uint32_t start = step.start_position.value_or(length_);
  BOUQUET_CHECK(start <= length_, "StepRequested start_position skips past the session's length");
  BOUQUET_CHECK(uint64_t{start} + h.shape[1] <= config_.max_length,
                "StepRequested runs past the session's max_length");
  for (auto& hop : hops_) hop.history.erase(hop.history.lower_bound(start), hop.history.end());
  length_ = start;
  step_ = CurrentStep{next_step_id_++, start, h.shape[1], 0};
  phase_ = Phase::stepping;
  send_step(now, 0, h, out);
}

void InferenceSession::send_step(Time now, size_t hop, const Activation& inputs, std::vector<Effect>& out) {
  Activation sent = inputs;
  sent.compression = config_.compression;
  hops_[hop].history[step_->start_position] = sent;
  step_->hop = hop;
  out.push_back(SendMessage{chain_[hop].peer,
                            StepRequest{hops_[hop].session_id, step_->step_id, step_->start_position,
                                        std::move(sent), std::nullopt, {}}});
  arm_deadline(now + config_.reply_timeout_s, out);
}

void InferenceSession::on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out) {
  if (auto* opened = std::get_if<SessionOpened>(&message)) {
    if (auto hop = hop_of(from, opened->session_id)) on_session_opened(now, *hop, out);
  } else if (auto* result = std::get_if<StepResult>(&message)) {
    if (auto hop = hop_of(from, result->session_id)) on_step_result(now, *hop, *result, out);
  } else if (auto* error = std::get_if<ErrorReply>(&message)) {
    auto hop = hop_of(from, error->request_id);
    if (!hop) return;  // not a session of this chain: a late reply from an earlier one
    // An error for an older step is stale; one with step id 0 concerns the session itself.
    if (error->step_id != 0 && (!step_ || error->step_id != step_->step_id)) return;
    fail_hop(*hop, error->error, out);
  }
}

void InferenceSession::on_session_opened(Time now, size_t hop, std::vector<Effect>& out) {
  if (phase_ != Phase::opening || hops_[hop].opened) return;
  hops_[hop].opened = true;
  for (const auto& h : hops_) {
    if (!h.opened) return;
  }
  phase_ = Phase::ready;
  out.push_back(CancelTimer{deadline_timer_});
  deadline_armed_ = false;
  out.push_back(SessionReady{config_.session_id, chain_});
}

void InferenceSession::on_step_result(Time now, size_t hop, const StepResult& result, std::vector<Effect>& out) {
  if (phase_ != Phase::stepping || hop != step_->hop || result.step_id != step_->step_id) return;
  const auto& sent = hops_[hop].history.at(step_->start_position);
  if (result.start_position != step_->start_position || result.hidden_states.shape != sent.shape) {
    return fail_hop(hop, Error{ErrorCode::bad_reply, "step result does not match the step's position or shape"}, out);
  }
  if (hop + 1 < chain_.size()) return send_step(now, hop + 1, result.hidden_states, out);
  out.push_back(CancelTimer{deadline_timer_});
  deadline_armed_ = false;
  length_ = step_->start_position + step_->new_tokens;
  phase_ = Phase::ready;
  const CurrentStep done = *step_;
  step_.reset();
  out.push_back(StepDone{config_.session_id, done.step_id, done.start_position, result.hidden_states});
}

void InferenceSession::on_close_requested(std::vector<Effect>& out) {
  close_hops(out);
  phase_ = Phase::closed;
  out.push_back(SessionClosed{config_.session_id});
}

void InferenceSession::arm_deadline(Time at, std::vector<Effect>& out) {
  out.push_back(SetTimer{deadline_timer_, at});
  deadline_armed_ = true;
}

void InferenceSession::fail_hop(size_t hop, Error error, std::vector<Effect>& out) {
  error.message = fmt::format("server {} (blocks {}): {}", chain_[hop].peer.to_string(),
                              chain_[hop].span.to_string(), error.message);
  fail(std::move(error), out);
}

void InferenceSession::fail(Error error, std::vector<Effect>& out) {
  close_hops(out);
  phase_ = Phase::failed;
  out.push_back(SessionFailed{config_.session_id, std::move(error)});
}

void InferenceSession::close_hops(std::vector<Effect>& out) {
  if (deadline_armed_) out.push_back(CancelTimer{deadline_timer_});
  deadline_armed_ = false;
  // Best effort: servers also free the cache on their idle timeout or when we vanish.
  for (size_t i = 0; i < hops_.size(); ++i) {
    if (hops_[i].open_sent) out.push_back(SendMessage{chain_[i].peer, CloseSession{hops_[i].session_id}});
  }
}

std::optional<size_t> InferenceSession::hop_of(PeerId peer) const {
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (chain_[i].peer == peer) return i;
  }
  return std::nullopt;
}

std::optional<size_t> InferenceSession::hop_of(PeerId peer, uint64_t session_id) const {
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (chain_[i].peer == peer && hops_[i].session_id == session_id) return i;
  }
  return std::nullopt;
}

std::string_view to_string(InferenceSession::Phase phase) {
  switch (phase) {
    case InferenceSession::Phase::idle: return "idle";
    case InferenceSession::Phase::routing: return "routing";
    case InferenceSession::Phase::opening: return "opening";
    case InferenceSession::Phase::ready: return "ready";
    case InferenceSession::Phase::stepping: return "stepping";
    case InferenceSession::Phase::closed: return "closed";
    case InferenceSession::Phase::failed: return "failed";
  }
  return "unknown";
}

}  // namespace bouquet::core

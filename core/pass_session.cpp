#include "core/pass_session.h"

#include <fmt/core.h>

#include <algorithm>

#include "core/positions.h"

namespace bouquet::core {

PassSession::PassSession(PassSessionConfig config)
    : config_(std::move(config)), bans_(config_.bans), rng_(Rng(config_.spot_check_seed).derive(0x73706f74)) {
  BOUQUET_CHECK(config_.num_blocks > 0 && config_.hidden_size > 0, "a pass session needs blocks and a hidden size");
  BOUQUET_CHECK(config_.spot_check_rate >= 0 && config_.spot_check_rate <= 1 && config_.spot_check_rtol >= 0,
                "PassSessionConfig spot_check_rate must be in [0, 1] and spot_check_rtol >= 0");
}

std::vector<Chain> PassSession::chains() const {
  std::vector<Chain> out;
  for (const Sub& sub : subs_) out.push_back(sub.chain);
  return out;
}

void PassSession::handle(Time now, const Input& in, std::vector<Effect>& out) {
  if (auto* forward = std::get_if<ForwardRequested>(&in)) {
    on_forward_requested(now, *forward, out);
  } else if (auto* backward = std::get_if<BackwardRequested>(&in)) {
    on_backward_requested(now, *backward, out);
  } else if (auto* route = std::get_if<RoutePlanned>(&in)) {
    on_route(now, *route, out);
  } else if (auto* received = std::get_if<MessageReceived>(&in)) {
    on_message(now, received->from, received->message, out);
  } else if (auto* gone = std::get_if<PeerUnreachable>(&in)) {
    fail_peer(now, gone->peer, Error{ErrorCode::peer_unreachable, gone->reason}, out);
  } else if (auto* refused = std::get_if<IdentityRefused>(&in)) {
    // Not who its record says: avoided for the rest of the session, whatever its bans say.
    impostors_.insert(refused->peer);
    fail_peer(now, refused->peer, Error{ErrorCode::identity_refused, refused->reason}, out);
  } else if (auto* timer = std::get_if<TimerFired>(&in); timer && timer->timer == kDeadlineTimer) {
    on_timer(now, out);
  }
  if (phase_ != Phase::failed) rearm(out);
}

// Every sub-batch awaiting `peer` fails its hop with `error`.
void PassSession::fail_peer(Time now, PeerId peer, const Error& error, std::vector<Effect>& out) {
  for (Sub& sub : subs_) {
    if (phase_ == Phase::failed) break;
    if (sub.request_id != 0 && sub.awaiting == peer) fail_hop(now, sub, error, out);
  }
}

void PassSession::on_forward_requested(Time now, const ForwardRequested& request, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::idle || phase_ == Phase::forward_done || phase_ == Phase::failed,
                "ForwardRequested while a pass is under way");
  const Activation& h = request.hidden_states;
  BOUQUET_CHECK(h.shape.size() == 3 && h.shape[0] > 0 && h.shape[1] > 0 && h.shape[2] == config_.hidden_size,
                "ForwardRequested hidden_states must be [batch > 0, tokens > 0, hidden_size]");
  if (request.prompts) {
    const auto& p = request.prompts->shape;
    BOUQUET_CHECK(p.size() == 4 && p[0] == config_.num_blocks && (p[1] == 1 || p[1] == h.shape[0]) && p[2] > 0 &&
                      p[3] == config_.hidden_size,
                  "deep prompts must be [num_blocks, batch or 1, prefix > 0, hidden_size]");
  }
  failures_ = 0;
  subs_.clear();
  prompts_ = request.prompts;
  tokens_ = h.shape[1];
  if (prompts_) prompts_->compression = config_.compression;
  phase_ = Phase::forward;
  ++forwards_;
  uint32_t begin = 0;
  for (uint32_t rows : split_batch(h.shape[0], h.shape[1], config_.max_tokens_per_request)) {
    Sub sub;
    sub.row_begin = begin;
    sub.rows = rows;
    sub.x = slice_axis(h, 0, begin, begin + rows);
    sub.x.compression = config_.compression;
    sub.route_id = ++route_id_;
    PlanRoute plan{sub.route_id,    config_.model_id,   BlockSpan{0, config_.num_blocks}, avoided(now), 0,
                   config_.adapter, Routing::throughput};
    // A later pass sees the servers that joined, moved or left since the run began; the first
    // plans on what the driver just found.
    plan.read_directory = forwards_ > 1;
    out.push_back(std::move(plan));
    subs_.push_back(std::move(sub));
    begin += rows;
  }
}

void PassSession::on_backward_requested(Time now, const BackwardRequested& request, std::vector<Effect>& out) {
  BOUQUET_CHECK(phase_ == Phase::forward_done, "BackwardRequested without a finished forward");
  const Activation& g = request.grad_outputs;
  uint32_t batch = 0;
  for (const Sub& sub : subs_) batch += sub.rows;
  BOUQUET_CHECK(g.shape == (std::vector<uint32_t>{batch, tokens_, config_.hidden_size}),
                "BackwardRequested grad_outputs must have the forward's output shape");
  failures_ = 0;
  phase_ = Phase::backward;
  for (Sub& sub : subs_) {
    sub.x = slice_axis(g, 0, sub.row_begin, sub.row_begin + sub.rows);
    sub.x.compression = config_.compression;
    sub.grad_prompts.clear();
    sub.hop = sub.chain.size() - 1;
    sub.stage = Stage::backward;
  }
  for (Sub& sub : subs_) {
    if (phase_ != Phase::backward) break;
    pump(now, sub, out);
  }
}

void PassSession::on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out) {
  auto it = std::find_if(subs_.begin(), subs_.end(), [&](const Sub& s) {
    return s.route_id == route.route_id &&
           (s.stage == Stage::routing || s.stage == Stage::replanning || s.stage == Stage::checking);
  });
  if (it == subs_.end() || phase_ == Phase::failed) return;
  Sub& sub = *it;
  if (sub.stage == Stage::checking) return on_check_route(now, sub, route, out);
  if (sub.stage == Stage::routing) {
    const BlockSpan all{0, config_.num_blocks};
    if (!route.chain.ok() || !chain_covers(route.chain.value(), all)) {
      const Error why = route.chain.ok() ? Error{ErrorCode::no_route, "the planned chain does not cover the model"}
                                         : route.chain.error();
      return fail(Error{why.code, fmt::format("no chain of servers for the pass: {}", why.message)}, out);
    }
    sub.chain = route.chain.value();
    sub.hop = 0;
    sub.stage = Stage::forward;
    return pump(now, sub, out);
  }
  PassRecovery& r = recoveries_.at(sub.recovery);
  if (!route.chain.ok() || !chain_covers(route.chain.value(), r.span)) {
    const Error why =
        route.chain.ok() ? Error{ErrorCode::no_route, "the planned chain does not cover them"} : route.chain.error();
    return fail(Error{why.code, fmt::format("blocks {} failed on server {} ({}) and {}", r.span.to_string(),
                                            r.failed_peer.to_string(), r.cause.message, why.message)},
                out);
  }
  const Chain& replacement = route.chain.value();
  r.replacement = replacement;
  const size_t f = sub.failed;
  sub.chain.erase(sub.chain.begin() + static_cast<ptrdiff_t>(f));
  sub.chain.insert(sub.chain.begin() + static_cast<ptrdiff_t>(f), replacement.begin(), replacement.end());
  const size_t added = replacement.size() - 1;
  sub.stage = sub.resume;
  switch (sub.resume) {
    case Stage::forward:  // hop f is now the first replacement hop, with the same input
      break;
    case Stage::refill:  // the recompute goes on through the replacement; its target moved on
      sub.refill = f;
      sub.hop += added;
      break;
    case Stage::backward:  // the last replacement hop runs backward next (pump refills its inputs)
      sub.hop = f + added;
      break;
    default:
      BOUQUET_CHECK(false, "a replacement for a sub-batch that was not running");
  }
  pump(now, sub, out);
}

void PassSession::pump(Time now, Sub& sub, std::vector<Effect>& out) {
  if (sub.stage == Stage::forward) {
    if (sub.hop == sub.chain.size()) {
      sub.stage = Stage::done;
      return finish_if_done(out);
    }
    sub.inputs[sub.chain[sub.hop].span.begin] = sub.x;
    return send_forward(now, sub, sub.hop, sub.x, out);
  }
  if (sub.stage == Stage::backward) {
    if (sub.inputs.count(sub.chain[sub.hop].span.begin)) return send_backward(now, sub, out);
    // A replacement split the span: recompute the inner hops' inputs from the span's start.
    size_t j = sub.hop;
    while (!sub.inputs.count(sub.chain[j].span.begin)) {
      BOUQUET_CHECK(j > 0, "no saved inputs before a hop");
      --j;
    }
    sub.refill = j;
    sub.stage = Stage::refill;
  }
  if (sub.stage == Stage::refill) {
    return send_forward(now, sub, sub.refill, sub.inputs.at(sub.chain[sub.refill].span.begin), out);
  }
}

std::optional<Activation> PassSession::hop_prompts(const Sub& sub, const Hop& hop) const {
  if (!prompts_) return std::nullopt;
  Activation p = slice_axis(*prompts_, 0, hop.span.begin, hop.span.end);
  if (p.shape[1] != 1) p = slice_axis(p, 1, sub.row_begin, sub.row_begin + sub.rows);
  p.compression = config_.compression;
  return p;
}

// Forward and backward requests carry the same call: one builder fills it and sends.
template <class Request>
void PassSession::send_request(Time now, Sub& sub, const Hop& target, const Activation& inputs, Request request,
                               std::vector<Effect>& out) {
  request.request_id = config_.request_id_base + next_request_++;
  request.model_id = config_.model_id;
  request.span = target.span;
  request.adapter = config_.adapter;
  request.reply_compression = config_.compression;
  request.hidden_states = inputs;
  request.hidden_states.compression = config_.compression;
  request.prompts = hop_prompts(sub, target);
  sub.request_id = request.request_id;
  sub.awaiting = target.peer;
  sub.deadline = now + config_.reply_timeout_s;
  ++requests_sent_;
  out.push_back(SendMessage{target.peer, std::move(request)});
}

// pass_session_spot.cpp sends a check's forwards through it too: instantiated here, where it is
// defined (an optimizer that inlines every use in this file need not emit it otherwise; the ASan
// build's link failed on exactly that).
template void PassSession::send_request<ForwardRequest>(Time, Sub&, const Hop&, const Activation&, ForwardRequest,
                                                        std::vector<Effect>&);

void PassSession::send_forward(Time now, Sub& sub, size_t hop, const Activation& inputs, std::vector<Effect>& out) {
  send_request(now, sub, sub.chain.at(hop), inputs, ForwardRequest{}, out);
}

void PassSession::send_backward(Time now, Sub& sub, std::vector<Effect>& out) {
  const Hop& target = sub.chain.at(sub.hop);
  BackwardRequest request;
  request.grad_outputs = sub.x;
  send_request(now, sub, target, sub.inputs.at(target.span.begin), std::move(request), out);
}

PassSession::Sub* PassSession::awaited(PeerId from, uint64_t request_id) {
  if (request_id == 0) return nullptr;
  for (Sub& sub : subs_) {
    if (sub.request_id == request_id && sub.awaiting == from) return &sub;
  }
  return nullptr;
}

void PassSession::on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out) {
  uint64_t id = 0;
  if (auto* f = std::get_if<ForwardResult>(&message)) id = f->request_id;
  if (auto* b = std::get_if<BackwardResult>(&message)) id = b->request_id;
  if (auto* e = std::get_if<ErrorReply>(&message)) id = e->request_id;
  if (Sub* sub = awaited(from, id); sub && phase_ != Phase::failed) on_reply(now, *sub, message, out);
}

void PassSession::on_reply(Time now, Sub& sub, const Message& message, std::vector<Effect>& out) {
  if (sub.stage == Stage::checking) return on_check_reply(now, sub, message, out);
  const bool backward = sub.stage == Stage::backward;
  const size_t index = sub.stage == Stage::refill ? sub.refill : sub.hop;
  const Hop hop = sub.chain.at(index);
  const char* what = backward ? "backward" : "forward";
  sub.request_id = 0;
  sub.deadline = kNever;
  if (auto* error = std::get_if<ErrorReply>(&message)) {
    if (error->error.code == ErrorCode::bad_request || error->error.code == ErrorCode::over_limit) {
      return fail(Error{error->error.code, fmt::format("server {} refused {} of blocks {}: {}", hop.peer.to_string(),
                                                       what, hop.span.to_string(), error->error.message)},
                  out);
    }
    return fail_hop(now, sub, error->error, out);
  }
  const std::vector<uint32_t> expected{sub.rows, tokens_, config_.hidden_size};
  const Activation* result = nullptr;
  const std::optional<Activation>* result_prompts = nullptr;
  if (auto* f = std::get_if<ForwardResult>(&message); f && !backward) result = &f->hidden_states;
  if (auto* b = std::get_if<BackwardResult>(&message); b && backward) {
    result = &b->grad_inputs;
    result_prompts = &b->grad_prompts;
  }
  if (!result) {
    return fail_hop(
        now, sub,
        Error{ErrorCode::bad_reply, fmt::format("answered {} with {}", what, to_string(message_type(message)))}, out);
  }
  if (result->shape != expected) {
    return fail_hop(now, sub,
                    Error{ErrorCode::bad_reply, fmt::format("{} reply has another shape than the request", what)}, out);
  }
  bans_.forgive(hop.peer);
  if (sub.stage == Stage::forward) {
    if (start_check(now, sub, *result, out)) return;  // held until checked
    sub.x = *result;
    ++sub.hop;
  } else if (sub.stage == Stage::refill) {
    sub.inputs[sub.chain.at(index + 1).span.begin] = *result;
    if (++sub.refill == sub.hop) sub.stage = Stage::backward;
  } else {
    if (prompts_) {
      const std::optional<Activation> sent = hop_prompts(sub, hop);
      if (!*result_prompts || (*result_prompts)->shape != sent->shape) {
        return fail_hop(now, sub,
                        Error{ErrorCode::bad_reply, "backward reply without the deep prompts' gradient of their shape"},
                        out);
      }
      sub.grad_prompts[hop.span.begin] = **result_prompts;
    }
    sub.x = *result;
    if (sub.hop == 0) {
      sub.stage = Stage::done;
      return finish_if_done(out);
    }
    --sub.hop;
  }
  pump(now, sub, out);
}

void PassSession::on_timer(Time now, std::vector<Effect>& out) {
  armed_at_ = kNever;  // it fired
  for (Sub& sub : subs_) {
    if (phase_ == Phase::failed) return;
    if (sub.request_id != 0 && sub.deadline <= now) {
      const char* what = sub.stage == Stage::backward ? "backward" : "forward";
      fail_hop(now, sub,
               Error{ErrorCode::timeout, fmt::format("no answer to {} within {} s", what, config_.reply_timeout_s)},
               out);
    }
  }
}

void PassSession::fail_hop(Time now, Sub& sub, Error cause, std::vector<Effect>& out) {
  if (sub.stage == Stage::checking) return check_failed(now, sub, cause, out);
  const size_t index = sub.stage == Stage::refill ? sub.refill : sub.hop;
  const Hop failed = sub.chain.at(index);
  sub.request_id = 0;
  sub.deadline = kNever;
  if (++failures_ > config_.max_retries) {
    return fail(Error{cause.code,
                      fmt::format("giving up after {} failed hops in one pass; the last: blocks {} on server {}: {}",
                                  failures_, failed.span.to_string(), failed.peer.to_string(), cause.message)},
                out);
  }
  bans_.ban(failed.peer, now);
  recoveries_.push_back(PassRecovery{failed.span, failed.peer, cause, {}});
  sub.recovery = recoveries_.size() - 1;
  sub.resume = sub.stage;
  sub.stage = Stage::replanning;
  sub.failed = index;
  sub.route_id = ++route_id_;
  PlanRoute plan{sub.route_id, config_.model_id, failed.span, avoided(now), 0, config_.adapter, Routing::throughput};
  plan.read_directory = true;  // who holds the failed span now
  out.push_back(std::move(plan));
}

void PassSession::fail(Error error, std::vector<Effect>& out) {
  for (Sub& sub : subs_) {
    sub.request_id = 0;
    sub.deadline = kNever;
    sub.stage = Stage::done;
    sub.inputs.clear();
  }
  if (armed_at_ != kNever) out.push_back(CancelTimer{kDeadlineTimer});
  armed_at_ = kNever;
  phase_ = Phase::failed;
  out.push_back(PassFailed{std::move(error)});
}

void PassSession::finish_if_done(std::vector<Effect>& out) {
  if (!std::all_of(subs_.begin(), subs_.end(), [](const Sub& s) { return s.stage == Stage::done; })) return;
  std::vector<Activation> parts;
  for (const Sub& sub : subs_) parts.push_back(sub.x);
  if (phase_ == Phase::forward) {
    phase_ = Phase::forward_done;
    out.push_back(ForwardDone{concat_axis(parts, 0)});
    return;
  }
  BOUQUET_CHECK(phase_ == Phase::backward, "a pass finished outside forward and backward");
  std::optional<Activation> grad_prompts;
  if (prompts_) {
    std::vector<Activation> per_sub;
    for (const Sub& sub : subs_) {
      std::vector<Activation> pieces;  // in block order: the map's keys ascend
      for (const auto& [block, piece] : sub.grad_prompts) pieces.push_back(piece);
      per_sub.push_back(concat_axis(pieces, 0));
    }
    grad_prompts = prompts_->shape[1] == 1 ? sum_activations(per_sub) : concat_axis(per_sub, 1);
  }
  for (Sub& sub : subs_) sub.inputs.clear();
  phase_ = Phase::idle;
  out.push_back(BackwardDone{concat_axis(parts, 0), std::move(grad_prompts)});
}

void PassSession::rearm(std::vector<Effect>& out) {
  Time next = kNever;
  for (const Sub& sub : subs_) {
    if (sub.request_id != 0) next = std::min(next, sub.deadline);
  }
  if (next == armed_at_) return;
  if (next == kNever)
    out.push_back(CancelTimer{kDeadlineTimer});
  else
    out.push_back(SetTimer{kDeadlineTimer, next});
  armed_at_ = next;
}

std::string_view to_string(PassSession::Phase phase) {
  switch (phase) {
    case PassSession::Phase::idle:
      return "idle";
    case PassSession::Phase::forward:
      return "forward";
    case PassSession::Phase::forward_done:
      return "forward_done";
    case PassSession::Phase::backward:
      return "backward";
    case PassSession::Phase::failed:
      return "failed";
  }
  return "unknown";
}

}  // namespace bouquet::core

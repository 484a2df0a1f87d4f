#include "sim/client_node.h"

#include "core/check.h"
#include "core/min_latency_route.h"
#include "core/route.h"
#include "core/throughput_route.h"

#include <simgrid/s4u/Host.hpp>
#include <simgrid/s4u/Link.hpp>

#include <fmt/core.h>

namespace bouquet::sim {
namespace {

// Replies to forward/backward passes: generous, the work of a whole span at batch 64 can take
// minutes on slow GPUs; a lost server still shows up as a failure rather than a hang.
constexpr double kPassReplyTimeout_s = 600;
constexpr uint32_t kPassTimers = 1u << 31;

}  // namespace

ClientNode::ClientNode(SimContext& context, const ClientConfig& config, const std::string& host,
                       size_t result_index)
    : NodeLoop(context.transport, host),
      context_(context),
      config_(config),
      device_(*find_device(config.device)),
      result_index_(result_index),
      rng_(context.rng.derive(Transport::peer_of(host).value)) {}

ClientResult& ClientNode::result() { return context_.result.clients.at(result_index_); }

void ClientNode::start_measure() { measuring_since_ = now(); }

void ClientNode::stop_measure() {
  if (measuring_since_) result().measured_s += now() - *measuring_since_;
  measuring_since_.reset();
}

void ClientNode::close_books() { stop_measure(); }

void ClientNode::finish(std::string error) {
  result().finished = error.empty();
  result().error = std::move(error);
  result().ended_s = now();
  done_ = true;
}

core::Activation ClientNode::hidden(uint32_t tokens) const {
  return core::make_sized_activation(
      {static_cast<uint32_t>(config_.work.batch), tokens, static_cast<uint32_t>(context_.shape.hidden)},
      context_.activation_dtype, context_.compression);
}

double ClientNode::client_compute_s(int64_t input_tokens, int64_t logit_rows) const {
  return context_.cost.client_step(device_, context_.shape, input_tokens, logit_rows).seconds;
}

void ClientNode::on_start() {
  result().started_s = now();
  at(config_.start_s, [this] {
    if (config_.work.kind == "generate") {
      open_session();
    } else {
      begin_passes();
    }
  });
}

void ClientNode::on_message(core::PeerId from, core::Message& message) {
  if (config_.work.kind == "generate") {
    if (session_) feed(core::MessageReceived{from, std::move(message)});
  } else {
    on_pass_reply(from, message);
  }
}

void ClientNode::on_reset(core::PeerId from) {
  if (config_.work.kind == "generate" && session_) {
    feed(core::PeerUnreachable{from, "connection reset"});
  } else if (!done_ && !chain_.empty() && chain_.at(hop_).peer == from) {
    finish(fmt::format("peer_unreachable: {} reset the connection", from.to_string()));
  }
}

void ClientNode::on_timer(uint32_t component, uint64_t timer) {
  if (component == kPassTimers) {
    if (timer == pass_timer_ && !done_) {
      finish(fmt::format("no reply from {} within {} s", chain_.at(hop_).peer.to_string(),
                         kPassReplyTimeout_s));
    }
    return;
  }
  if (session_ && component == session_index_) feed(core::TimerFired{timer});
}

// --- generation -------------------------------------------------------------------------------

void ClientNode::open_session() {
  core::InferenceSessionConfig c;
  c.session_id = rng_.next_u64() >> 16;  // room for the per-hop serials
  c.model_id = context_.model_id;
  c.num_blocks = static_cast<uint32_t>(context_.shape.num_blocks);
  c.hidden_size = static_cast<uint32_t>(context_.shape.hidden);
  c.max_length = static_cast<uint32_t>(config_.work.prefix_tokens + config_.work.new_tokens);
  c.batch = static_cast<uint32_t>(config_.work.batch);
  c.compression = context_.compression;
  const PolicyConfig& policies = context_.scenario.policies;
  c.recovery = *core::parse_recovery_policy(policies.recovery);
  c.recovery_deadline_s = policies.recovery_deadline_s;
  c.bans.base_s = policies.ban_base_s;
  ++session_index_;
  session_ = std::make_unique<core::InferenceSession>(c);
  feed(core::OpenRequested{});
}

void ClientNode::feed(const core::Input& input) {
  std::vector<core::Effect> effects;
  session_->handle(now(), input, effects);
  carry_out(effects);
}

void ClientNode::carry_out(std::vector<core::Effect>& effects) {
  for (auto& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      transport_.send(self(), send->to, std::move(send->message));
    } else if (auto* timer = std::get_if<core::SetTimer>(&effect)) {
      set_timer(session_index_, timer->timer, timer->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      cancel_timer(session_index_, cancel->timer);
    } else if (auto* plan = std::get_if<core::PlanRoute>(&effect)) {
      plan_route(*plan);
    } else if (std::holds_alternative<core::SessionReady>(effect)) {
      start_measure();
      steps_left_ = config_.work.new_tokens;
      const auto prefix = static_cast<uint32_t>(config_.work.prefix_tokens);
      // Embedding the prompt, then its first step.
      compute(client_compute_s(config_.work.batch * prefix, 0), [this, prefix] { request_step(prefix); });
    } else if (std::holds_alternative<core::StepDone>(effect)) {
      on_step_done();
    } else if (auto* failed = std::get_if<core::SessionFailed>(&effect)) {
      stop_measure();
      count_recoveries();
      finish(failed->error.to_string());
    } else if (std::holds_alternative<core::SessionClosed>(effect)) {
      count_recoveries();
      if (++sessions_done_ >= config_.work.repeat) {
        finish("");
      } else {
        open_session();
      }
    } else {
      BOUQUET_CHECK(false, "an inference session asked for an effect its driver does not carry out");
    }
  }
}

void ClientNode::measure_rtts(const std::vector<core::ServerRecord>& records) {
  // An ideal ping: the platform's round-trip latency to the server's host.
  for (const auto& record : records) {
    if (rtt_.samples(record.peer) > 0) continue;
    std::vector<simgrid::s4u::Link*> links;
    double latency_s = 0;
    simgrid::s4u::Host::by_name(host())->route_to(simgrid::s4u::Host::by_name(record.address), links,
                                                  &latency_s);
    double back_s = 0;
    links.clear();
    simgrid::s4u::Host::by_name(record.address)->route_to(simgrid::s4u::Host::by_name(host()), links,
                                                          &back_s);
    rtt_.observe(record.peer, latency_s + back_s);
  }
}

void ClientNode::count_recoveries() {
  for (const auto& recovery : session_->recoveries()) {
    ++result().recoveries;
    result().positions_replayed += recovery.positions_replayed;
  }
}

void ClientNode::plan_route(const core::PlanRoute& plan) {
  // The lookup sees what was announced by now; its answer comes back a few round trips later.
  std::vector<core::ServerRecord> records = context_.directory.lookup(now(), plan.model_id);
  core::RoutePlanned planned{plan.route_id, core::Chain{}};
  if (context_.scenario.policies.routing == "min_latency") {
    measure_rtts(records);
    planned.chain = core::plan_chain_min_latency(records, plan, now(), rtt_);
  } else {
    planned.chain = core::plan_chain_greedy(records, plan.model_id, plan.blocks, plan.avoid);
  }
  const uint32_t index = session_index_;
  at(now() + context_.directory.lookup_delay_s(), [this, planned, index] {
    if (session_ && index == session_index_) feed(planned);
  });
}

void ClientNode::request_step(uint32_t tokens) {
  feed(core::StepRequested{hidden(tokens), std::nullopt});
}

void ClientNode::on_step_done() {
  ++result().steps;
  result().tokens += config_.work.batch;
  // Final norm and LM head over each sequence's last position, then embed the sampled token.
  const int64_t batch = config_.work.batch;
  compute(client_compute_s(batch, batch), [this] {
    if (steps_left_ > 0) {
      --steps_left_;
      request_step(1);
    } else {
      stop_measure();
      feed(core::CloseRequested{});
    }
  });
}

// --- forward / backward passes ------------------------------------------------------------------

void ClientNode::begin_passes() {
  passes_left_ = config_.work.repeat;
  std::vector<core::ServerRecord> records = context_.directory.lookup(now(), context_.model_id);
  core::PlanRoute plan;
  plan.model_id = context_.model_id;
  plan.blocks = core::BlockSpan{0, static_cast<uint32_t>(context_.shape.num_blocks)};
  auto chain = core::plan_chain_by_throughput(records, plan, now(), rng_);
  at(now() + context_.directory.lookup_delay_s(), [this, chain] {
    if (!chain.ok()) return finish(chain.error().to_string());
    chain_ = chain.value();
    start_measure();
    const int64_t tokens = config_.work.batch * config_.work.sequence_tokens;
    compute(client_compute_s(tokens, 0), [this] { send_pass(0); });
  });
}

void ClientNode::send_pass(size_t hop) {
  hop_ = hop;
  request_id_ = rng_.next_u64();
  const core::Hop& target = chain_.at(hop);
  const auto tokens = static_cast<uint32_t>(config_.work.sequence_tokens);
  if (!backward_phase_) {
    core::ForwardRequest request;
    request.request_id = request_id_;
    request.model_id = context_.model_id;
    request.span = target.span;
    request.reply_compression = context_.compression;
    request.hidden_states = hidden(tokens);
    transport_.send(self(), target.peer, std::move(request));
  } else {
    core::BackwardRequest request;
    request.request_id = request_id_;
    request.model_id = context_.model_id;
    request.span = target.span;
    request.reply_compression = context_.compression;
    request.hidden_states = hidden(tokens);
    request.grad_outputs = hidden(tokens);
    transport_.send(self(), target.peer, std::move(request));
  }
  pass_timer_ = request_id_;
  set_timer(kPassTimers, pass_timer_, now() + kPassReplyTimeout_s);
}

void ClientNode::on_pass_reply(core::PeerId from, const core::Message& message) {
  if (done_ || chain_.empty() || from != chain_.at(hop_).peer) return;
  if (auto* error = std::get_if<core::ErrorReply>(&message)) {
    if (error->request_id != request_id_) return;
    return finish(fmt::format("{} from {}", error->error.to_string(), from.to_string()));
  }
  uint64_t answered = 0;
  if (auto* forward = std::get_if<core::ForwardResult>(&message)) answered = forward->request_id;
  if (auto* backward = std::get_if<core::BackwardResult>(&message)) answered = backward->request_id;
  if (answered != request_id_) return;  // late or foreign
  cancel_timer(kPassTimers, pass_timer_);
  if (!backward_phase_ && hop_ + 1 < chain_.size()) return send_pass(hop_ + 1);
  if (config_.work.kind == "backward") {
    if (!backward_phase_) {
      backward_phase_ = true;  // the loss gradient is tiny next to the passes; not charged
      return send_pass(chain_.size() - 1);
    }
    if (hop_ > 0) return send_pass(hop_ - 1);
    backward_phase_ = false;
  }
  ++result().steps;
  result().tokens += config_.work.batch * config_.work.sequence_tokens;
  if (--passes_left_ > 0) return send_pass(0);
  stop_measure();
  finish("");
}

}  // namespace bouquet::sim

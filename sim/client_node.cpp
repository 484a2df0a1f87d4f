#include "sim/client_node.h"

#include "core/check.h"
#include "core/planners.h"
#include "core/route.h"

#include <simgrid/s4u/Host.hpp>
#include <simgrid/s4u/Link.hpp>

#include <fmt/core.h>

namespace bouquet::sim {
namespace {

// Replies to forward/backward passes: generous, the work of a whole span at batch 64 can take
// minutes on slow GPUs; a lost server still shows up as a failure rather than a hang.
constexpr double kPassReplyTimeout_s = 600;
constexpr uint32_t kPassTimers = 1u << 31;
// A continuous client whose session failed tries again after this long, as a user's loop would
// (the core's own re-planning interval): without a pause, a swarm with no route would spin.
constexpr double kRetryAfterFailure_s = 5;

}  // namespace

ClientNode::ClientNode(SimContext& context, const ClientConfig& config, const std::string& host, size_t result_index)
    : NodeLoop(context.transport, host),
      context_(context),
      config_(config),
      device_(*find_device(config.device)),
      result_index_(result_index),
      rng_(context.rng.derive(Transport::peer_of(host).value)) {}

ClientResult& ClientNode::result() { return context_.result.clients.at(result_index_); }

void ClientNode::start_measure() {
  if (!measuring_since_) measuring_since_ = now();  // a restarted generation keeps its clock
}

void ClientNode::stop_measure() {
  if (measuring_since_) result().measured_s += now() - *measuring_since_;
  measuring_since_.reset();
}

void ClientNode::close_books() {
  stop_measure();
  // A session still open at the end (restart_from_scratch restarts within one) reports what it
  // recovered so far; ended sessions already did.
  using Phase = core::InferenceSession::Phase;
  if (session_ && session_->phase() != Phase::closed && session_->phase() != Phase::failed) count_recoveries();
  if (continuous() && !done_) {
    // Open-ended work ends with the run: what was measured up to now is the result.
    result().finished = true;
    result().ended_s = now();
    done_ = true;
  }
}

void ClientNode::finish(std::string error) {
  result().finished = error.empty();
  result().error = std::move(error);
  result().ended_s = now();
  done_ = true;
}

core::Activation ClientNode::hidden(uint32_t batch, uint32_t tokens) const {
  return core::make_sized_activation({batch, tokens, static_cast<uint32_t>(context_.shape.hidden)},
                                     context_.activation_dtype, context_.compression);
}

double ClientNode::client_compute_s(int64_t input_tokens, int64_t logit_rows) const {
  return context_.cost.client_step(device_, context_.shape, input_tokens, logit_rows).seconds;
}

void ClientNode::on_start() {
  result().started_s = now();
  at(config_.start_s, [this] {
    // Continuous work is measured as its user lives it: every second from the start on, routing,
    // failures and retries included.
    if (continuous()) start_measure();
    if (config_.work.kind == "generate") {
      open_session();
    } else {
      begin_passes();
    }
  });
}

void ClientNode::on_message(core::PeerId from, core::Message& message) {
  if (session_) feed(core::MessageReceived{from, std::move(message)});
  if (pass_) feed_pass(core::MessageReceived{from, std::move(message)});
}

void ClientNode::on_reset(core::PeerId from) {
  // The implementation first notices the failure, reconnects and re-routes (its profile's
  // failure costs); only then does the core's recovery start.
  // These costs belong to re-opening server sessions (replay, restart, a restart from scratch):
  // a cache-less client holds no server state and retries at once. A replaying recovery also
  // pays per position of the history it sends again.
  const std::string& recovery = context_.scenario.policies.recovery;
  const bool replays = recovery == "replay" || recovery == "restart";
  const int64_t history = replays && session_ ? session_->length() : 0;
  const double delay_s = recovery == "cacheless" ? 0.0 : context_.scenario.failure.before_recovery_s(history);
  const uint32_t session = session_index_;
  auto deliver = [this, from, session] {
    if (session_ && session_index_ == session) feed(core::PeerUnreachable{from, "connection reset"});
    if (pass_) feed_pass(core::PeerUnreachable{from, "connection reset"});
  };
  if (delay_s > 0) {
    at(now() + delay_s, deliver);
  } else {
    deliver();
  }
}

void ClientNode::on_timer(uint32_t component, uint64_t timer) {
  if (component == kPassTimers) {
    if (pass_) feed_pass(core::TimerFired{timer});
    return;
  }
  if (session_ && component == session_index_) feed(core::TimerFired{timer});
}

// --- generation -------------------------------------------------------------------------------

void ClientNode::open_session() {
  core::InferenceSessionConfig c;
  c.session_id = core::draw_session_id(rng_);
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
  c.spot_check_rate = policies.spot_check_rate;
  c.speeds = &speeds_;
  ++session_index_;
  attempt_steps_ = 0;
  ++attempt_;
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
    } else if (auto* ready = std::get_if<core::SessionReady>(&effect)) {
      if (session_index_ == 1 && result().routes.empty())
        result().routes.push_back({"opened", 0, 0, "", named(ready->chain)});
      if (!continuous()) start_measure();  // a restarted generation keeps its clock
      steps_left_ = config_.work.new_tokens;
      const auto prefix = static_cast<uint32_t>(config_.work.prefix_tokens);
      // Embedding the prompt, then its first step (whose latency is not a token's).
      step_started_s_.reset();
      compute(client_compute_s(config_.work.batch * prefix, 0), [this, prefix, attempt = attempt_] {
        if (attempt == attempt_) request_step(prefix);
      });
    } else if (std::holds_alternative<core::SessionRestarted>(effect)) {
      // Everything this attempt generated is lost; the session re-opens and its SessionReady
      // starts the generation again from the prompt, the clock still running.
      result().steps -= attempt_steps_;
      result().tokens -= attempt_steps_ * config_.work.batch;
      attempt_steps_ = 0;
      ++attempt_;
      step_started_s_.reset();
    } else if (std::holds_alternative<core::StepDone>(effect)) {
      on_step_done();
    } else if (auto* failed = std::get_if<core::SessionFailed>(&effect)) {
      count_recoveries();
      ++result().sessions_failed;
      if (continuous()) {
        // A continuous client pauses before its next session, as a user's loop would.
        const uint32_t index = session_index_;
        at(now() + kRetryAfterFailure_s, [this, index] {
          if (index == session_index_) open_session();
        });
      } else {
        stop_measure();
        finish(failed->error.to_string());
      }
    } else if (std::holds_alternative<core::SessionClosed>(effect)) {
      count_recoveries();
      ++result().sessions_finished;
      if (!continuous() && ++sessions_done_ >= config_.work.repeat) {
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
    simgrid::s4u::Host::by_name(host())->route_to(simgrid::s4u::Host::by_name(record.address), links, &latency_s);
    double back_s = 0;
    links.clear();
    simgrid::s4u::Host::by_name(record.address)->route_to(simgrid::s4u::Host::by_name(host()), links, &back_s);
    rtt_.observe(record.peer, latency_s + back_s);
  }
}

std::vector<NamedHop> ClientNode::named(const core::Chain& chain) const {
  std::vector<NamedHop> out;
  for (const core::Hop& hop : chain) {
    const auto name = names_.find(hop.peer);
    out.push_back({name == names_.end() ? hop.peer.to_string() : name->second, hop.span.begin, hop.span.end});
  }
  return out;
}

void ClientNode::count_recoveries() {
  for (const auto& recovery : session_->recoveries()) {
    ++result().recoveries;
    result().positions_replayed += recovery.positions_replayed;
    if (recovery.succeeded) result().recovery_s += recovery.duration_s();
    if (session_index_ != 1) continue;
    const auto failed = names_.find(recovery.failed_peer);
    result().routes.push_back({"recovered", recovery.span.begin, recovery.span.end,
                               failed == names_.end() ? recovery.failed_peer.to_string() : failed->second,
                               named(recovery.replacement)});
  }
}

void ClientNode::plan_route(const core::PlanRoute& plan) {
  const uint32_t index = session_index_;
  auto answer = [this, plan, index] {
    if (!session_ || index != session_index_) return;
    feed(core::RoutePlanned{plan.route_id, plan_on_known(plan)});
  };
  if (plan.spot_check) return at(now(), answer);  // the servers known will do, as for a real client
  if (!plan.read_directory) {
    // A session's first plan: the lookup sees what was announced by now; its answer comes back
    // a few round trips later.
    read_directory([answer] { answer(); });
    return;
  }
  // A re-plan (core PlanRoute::read_directory): a fresh read starts, the plan is made at once on
  // the records known, and waits for the read only when they give no chain.
  read_directory(nullptr);
  core::Result<core::Chain> chain = plan_on_known(plan);
  if (core::waits_for_directory(plan, chain)) {
    waiting_plan_ = [answer] { answer(); };
    return;
  }
  at(now(), [this, plan, index, chain = std::move(chain)] {
    if (session_ && index == session_index_) feed(core::RoutePlanned{plan.route_id, chain});
  });
}

core::Result<core::Chain> ClientNode::plan_on_known(const core::PlanRoute& plan) {
  return core::plan_route(
      core::routing_for(plan, context_.scenario.policies.routing), known_, plan,
      core::PlannerContext{now(), &rtt_, &speeds_, &rng_, context_.scenario.policies.load_aware_routing});
}

void ClientNode::read_directory(std::function<void()> then) {
  if (then) waiting_plan_ = std::move(then);
  if (reading_) return;  // the read in flight will answer
  reading_ = true;
  std::vector<core::ServerRecord> records = context_.directory.lookup(now(), context_.model_id);
  at(now() + context_.directory.lookup_delay_s(), [this, records = std::move(records)]() mutable {
    reading_ = false;
    for (const core::ServerRecord& r : records) names_.try_emplace(r.peer, r.address);  // a peer's host never changes
    measure_rtts(records);  // what a real client pings; the planner decides whether it matters
    known_ = std::move(records);
    if (auto waiting = std::exchange(waiting_plan_, nullptr)) waiting();
  });
}

void ClientNode::request_step(uint32_t tokens) {
  feed(core::StepRequested{hidden(static_cast<uint32_t>(config_.work.batch), tokens), std::nullopt});
}

void ClientNode::on_step_done() {
  if (step_started_s_) result().step_latencies_s.push_back(now() - *step_started_s_);
  step_started_s_.reset();
  ++result().steps;
  result().tokens += config_.work.batch;
  ++attempt_steps_;
  // Final norm and LM head over each sequence's last position, then embed the sampled token; an
  // implementation that re-copies each hop's input history also pays for that now.
  const int64_t batch = config_.work.batch;
  double history_s = 0;
  const CostModelConfig& cost = context_.cost.config();
  if (cost.client_history_copy_bytes_per_s > 0 && session_) {
    const double positions = static_cast<double>(session_->length());
    const double bytes = 2.0 * positions * static_cast<double>(batch * context_.shape.hidden) *
                         cost.activation_bytes_per_value * static_cast<double>(session_->chain().size());
    // A CPU copies at the profile's (single-threaded) rate; a GPU client's copy is a kernel
    // streaming at its share of the device's bandwidth.
    const double rate = device_.is_gpu ? device_.memory_bandwidth_bytes_per_s * cost.client_efficiency
                                       : cost.client_history_copy_bytes_per_s;
    history_s = bytes / rate;
  }
  const double hops_s = session_ ? cost.client_hop_overhead_s * static_cast<double>(session_->chain().size()) : 0.0;
  compute(client_compute_s(batch, batch) + history_s + hops_s, [this, attempt = attempt_] {
    if (attempt != attempt_) return;  // restarted from scratch meanwhile
    if (steps_left_ > 0) {
      --steps_left_;
      step_started_s_ = now();
      request_step(1);
    } else {
      if (!continuous()) stop_measure();
      feed(core::CloseRequested{});
    }
  });
}

// --- forward / backward passes ------------------------------------------------------------------

void ClientNode::begin_passes() {
  passes_left_ = config_.work.repeat;
  records_ = context_.directory.lookup(now(), context_.model_id);
  records_read_s_ = now();
  at(now() + context_.scenario.directory.update_period_s / 2, [this] { refresh_records(); });
  at(now() + context_.directory.lookup_delay_s(), [this] {
    if (!continuous()) start_measure();
    const int64_t tokens = config_.work.batch * config_.work.sequence_tokens;
    compute(client_compute_s(tokens, 0), [this] { start_pass(); });
  });
}

// Like a real client's background updater: the copy of the directory the passes plan on is
// re-read every half update period, so it never plans on a record past its expiry (records live
// two update periods, re-announced every one) and it sees servers that joined or moved since.
void ClientNode::refresh_records() {
  if (done_) return;
  auto records = context_.directory.lookup(now(), context_.model_id);
  const double read_s = now();
  at(now() + context_.directory.lookup_delay_s(), [this, records = std::move(records), read_s]() mutable {
    if (read_s < records_read_s_) return;  // a fresher read already arrived
    records_ = std::move(records);
    records_read_s_ = read_s;
  });
  at(now() + context_.scenario.directory.update_period_s / 2, [this] { refresh_records(); });
}

// One pass through the core's pass client: it splits the batch, routes each sub-batch by
// throughput, runs forward and backward hop by hop and recovers failed hops (core/pass_session.h).
void ClientNode::start_pass() {
  if (!pass_) {
    core::PassSessionConfig c;
    c.model_id = context_.model_id;
    c.num_blocks = static_cast<uint32_t>(context_.shape.num_blocks);
    c.hidden_size = static_cast<uint32_t>(context_.shape.hidden);
    c.compression = context_.compression;
    c.reply_timeout_s = kPassReplyTimeout_s;
    c.max_tokens_per_request = static_cast<uint32_t>(context_.scenario.policies.sub_batch_tokens);
    c.bans.base_s = context_.scenario.policies.ban_base_s;
    c.request_id_base = rng_.next_u64() >> 8;
    c.spot_check_rate = context_.scenario.policies.spot_check_rate;
    c.spot_check_seed = c.request_id_base;  // no draw of its own: rate 0 leaves the run as it was
    pass_ = std::make_unique<core::PassSession>(c);
  }
  const auto tokens = static_cast<uint32_t>(config_.work.sequence_tokens);
  feed_pass(core::ForwardRequested{hidden(static_cast<uint32_t>(config_.work.batch), tokens), std::nullopt});
}

void ClientNode::feed_pass(const core::Input& input) {
  if (done_) return;
  std::vector<core::Effect> effects;
  pass_->handle(now(), input, effects);
  for (auto& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      transport_.send(self(), send->to, std::move(send->message));
    } else if (auto* timer = std::get_if<core::SetTimer>(&effect)) {
      set_timer(kPassTimers, timer->timer, timer->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      cancel_timer(kPassTimers, cancel->timer);
    } else if (auto* plan = std::get_if<core::PlanRoute>(&effect)) {
      plan_pass_route(*plan);
    } else if (std::holds_alternative<core::ForwardDone>(effect)) {
      if (config_.work.kind == "backward") {
        // The loss gradient is tiny next to the passes: not charged.
        const auto tokens = static_cast<uint32_t>(config_.work.sequence_tokens);
        at(now(), [this, tokens] {
          feed_pass(core::BackwardRequested{hidden(static_cast<uint32_t>(config_.work.batch), tokens)});
        });
      } else {
        at(now(), [this] { on_pass_done(); });
      }
    } else if (std::holds_alternative<core::BackwardDone>(effect)) {
      at(now(), [this] { on_pass_done(); });
    } else if (auto* failed = std::get_if<core::PassFailed>(&effect)) {
      stop_measure();
      return finish(failed->error.to_string());
    } else {
      BOUQUET_CHECK(false, "a pass session asked for an effect its driver does not carry out");
    }
  }
}

// Plans on the copy of the directory held (refresh_records); when that copy has no route, it
// reads the directory once more and answers after the lookup's round trips.
void ClientNode::plan_pass_route(const core::PlanRoute& plan) {
  auto answer = [this, plan] {
    return core::RoutePlanned{
        plan.route_id, core::plan_route(core::routing_for(plan, context_.scenario.policies.routing), records_, plan,
                                        core::PlannerContext{now(), &rtt_, &speeds_, &rng_,
                                                             context_.scenario.policies.load_aware_routing})};
  };
  core::RoutePlanned planned = answer();
  if (planned.chain.ok()) {
    note_pass_route(planned);
    return at(now(), [this, planned] { feed_pass(planned); });
  }
  records_ = context_.directory.lookup(now(), context_.model_id);
  records_read_s_ = now();
  at(now() + context_.directory.lookup_delay_s(), [this, answer] {
    core::RoutePlanned late = answer();
    note_pass_route(late);
    feed_pass(late);
  });
}

// The first chain a pass was routed on, as a generation's opened route is recorded.
void ClientNode::note_pass_route(const core::RoutePlanned& planned) {
  if (planned.chain.ok() && result().routes.empty()) {
    for (const core::ServerRecord& r : records_) names_.try_emplace(r.peer, r.address);
    result().routes.push_back({"opened", 0, 0, "", named(planned.chain.value())});
  }
}

void ClientNode::on_pass_done() {
  ++result().steps;
  result().tokens += config_.work.batch * config_.work.sequence_tokens;
  if (continuous() || --passes_left_ > 0) return start_pass();
  stop_measure();
  finish("");
}

}  // namespace bouquet::sim

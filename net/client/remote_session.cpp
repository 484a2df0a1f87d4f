#include "net/client/remote_session.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include <utility>

#include "core/check.h"
#include "core/min_latency_route.h"
#include "core/route.h"
#include "gpu/tensor_bridge.h"

namespace bouquet::net {

using core::Effect;
using core::Error;
using core::ErrorCode;

namespace {

core::InferenceSessionConfig session_config(const RemoteSessionConfig& c) {
  core::InferenceSessionConfig s;
  s.session_id = c.session_id;
  s.model_id = c.model_id;
  s.num_blocks = c.num_blocks;
  s.hidden_size = c.hidden_size;
  s.max_length = c.max_length;
  s.batch = c.batch;
  s.compression = c.compression;
  s.cache_wait_timeout_s = c.cache_wait_timeout_s;
  s.reply_timeout_s = c.reply_timeout_s;
  s.recovery = c.recovery;
  s.adapter = c.adapter;
  s.recovery_deadline_s = c.recovery_deadline_s;
  s.spot_check_rate = c.spot_check_rate;
  return s;
}

}  // namespace

RemoteInferenceSession::RemoteInferenceSession(SwarmClient& client, RemoteSessionConfig config)
    : client_(client),
      config_(std::move(config)),
      session_([&] {
        core::InferenceSessionConfig s = session_config(config_);
        s.max_step_tokens = net::max_step_tokens(client.config().limits, config_.batch, config_.hidden_size);
        s.speeds = &client.speeds();
        return s;
      }()),
      rng_(config_.session_id),
      timers_(client.io(), client.clock(), [this](core::TimerId id) { feed(core::TimerFired{id}); }) {
  BOUQUET_CHECK((config_.session_id >> 63) == 0, "session ids keep the top bit clear");
  listener_ = client_.add_listener([this](const core::Input& input) { feed(input); });
}

RemoteInferenceSession::~RemoteInferenceSession() {
  if (ready_ && !closed_ && !failure_) {
    try {
      close();
    } catch (...) {
      // Best effort: servers also free the session when the connection goes or it idles out.
    }
  }
  client_.remove_listener(listener_);
  *alive_ = false;
}

std::vector<RouteHop> RemoteInferenceSession::route() const {
  std::vector<RouteHop> hops;
  for (const core::Hop& hop : session_.chain()) hops.push_back(RouteHop{client_.address_of(hop.peer), hop.span});
  return hops;
}

uint32_t RemoteInferenceSession::max_step_tokens() const {
  return net::max_step_tokens(client_.config().limits, config_.batch, config_.hidden_size);
}

void RemoteInferenceSession::open() {
  BOUQUET_CHECK(!ready_ && !failure_, "open() twice");
  if (!client_.discovered()) client_.discover();
  feed(core::OpenRequested{});
  wait("open the session");
  BOUQUET_CHECK(ready_, "the session reported neither ready nor failed");
}

at::Tensor RemoteInferenceSession::step(const at::Tensor& hidden, std::optional<uint32_t> start_position) {
  if (failure_) throw_failure();
  if (!ready_ || closed_) throw RemoteError(Error{ErrorCode::session_closed, "the session is not open"});
  if (!hidden.defined() || hidden.dim() != 3 || hidden.size(0) != config_.batch || hidden.size(1) == 0 ||
      hidden.size(2) != config_.hidden_size) {
    throw std::invalid_argument(
        fmt::format("a step needs [{}, tokens > 0, {}] hidden states", config_.batch, config_.hidden_size));
  }
  if (restarted_) report_restart();  // a server failed between steps
  const uint32_t start = start_position.value_or(length());
  const int64_t tokens = hidden.size(1);
  if (start > length() || start + tokens > config_.max_length) {
    throw std::invalid_argument(
        fmt::format("positions [{}, {}) do not follow the session's {} positions or exceed its max length {}", start,
                    start + tokens, length(), config_.max_length));
  }
  output_.reset();
  feed(core::StepRequested{activation_from_tensor(hidden, config_.compression), start_position});
  wait("finish the step");
  if (restarted_) report_restart();
  BOUQUET_CHECK(output_.has_value(), "the session reported neither a step nor a failure");
  at::Tensor out = tensor_from_activation(*output_);
  output_.reset();
  return out;
}

void RemoteInferenceSession::report_restart() {
  wait("re-open the session");  // on a fresh chain, or fail trying
  const uint32_t lost = *restarted_;
  restarted_.reset();
  output_.reset();
  throw GenerationRestarted(lost);
}

void RemoteInferenceSession::close() {
  if (closed_ || failure_ || !ready_) return;
  feed(core::CloseRequested{});
  client_.io().poll();  // hand the close messages to the sockets
}

void RemoteInferenceSession::poll() {
  if (closed_ || failure_) return;
  client_.io().poll();
}

at::Tensor RemoteSteps::step(const at::Tensor& hidden) {
  // Taken first: after a restart (GenerationRestarted) the loop feeds everything from position 0.
  const std::optional<uint32_t> start = std::exchange(start_, std::nullopt);
  return session_.step(hidden, start);
}

void RemoteSteps::truncate(int64_t length) {
  session_.poll();
  BOUQUET_CHECK(length >= 0 && length <= session_.length(), "truncate beyond what the session holds");
  start_ = static_cast<uint32_t>(length);
}

void RemoteInferenceSession::feed(const core::Input& input) {
  std::vector<Effect> effects;
  session_.handle(client_.clock().now(), input, effects);
  carry_out(effects);
}

void RemoteInferenceSession::carry_out(std::vector<Effect>& effects) {
  for (Effect& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      client_.send(send->to, send->message);
    } else if (auto* set = std::get_if<core::SetTimer>(&effect)) {
      timers_.set(set->timer, set->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      timers_.cancel(cancel->timer);
    } else if (auto* plan = std::get_if<core::PlanRoute>(&effect)) {
      // Never from inside handle(): components are not re-entrant. Whether the plan reads the
      // directory again is the core's (PlanRoute::read_directory).
      asio::post(client_.io(), [this, alive = std::weak_ptr<bool>(alive_), plan = *plan] {
        auto a = alive.lock();
        if (!a || !*a) return;
        feed(client_.plan_route(plan, config_.routing, rng_));
      });
    } else if (std::holds_alternative<core::SessionReady>(effect)) {
      ready_ = true;
    } else if (auto* done = std::get_if<core::StepDone>(&effect)) {
      output_ = std::move(done->outputs);
    } else if (auto* failed = std::get_if<core::SessionFailed>(&effect)) {
      failure_ = failed->error;
    } else if (std::holds_alternative<core::SessionClosed>(effect)) {
      closed_ = true;
    } else if (auto* restarted = std::get_if<core::SessionRestarted>(&effect)) {
      restarted_ = restarted->positions_lost;
    }
  }
}

void RemoteInferenceSession::wait(const char* what) {
  // The core's own deadlines end every wait; this bound only guards against a driver bug, so it
  // is generous: every hop replaced once, each replacement replaying under its own deadlines.
  const double hops = static_cast<double>(std::max<size_t>(session_.chain().size(), 1));
  const double bound_s = 2 * (client_.config().connect_timeout_s + config_.cache_wait_timeout_s +
                              config_.recovery_deadline_s + 2 * config_.reply_timeout_s * (hops + 1)) +
                         60;
  const bool reported = client_.run_until(
      [&] { return failure_ || output_ || (ready_ && session_.phase() == core::InferenceSession::Phase::ready); },
      bound_s);
  if (failure_) throw_failure();
  if (!reported) {
    throw RemoteError(Error{ErrorCode::timeout, fmt::format("could not {} within {} s", what, bound_s)});
  }
}

void RemoteInferenceSession::throw_failure() {
  Error error = *failure_;
  // The core names servers by peer id; people know them by address.
  for (const auto& status : client_.peers()) {
    const std::string id = status.peer.to_string();
    for (size_t at = error.message.find(id); at != std::string::npos; at = error.message.find(id)) {
      error.message.replace(at, id.size(), status.address);
    }
  }
  if (error.code == ErrorCode::no_route) {
    const std::string problems = routing_problems();
    if (!problems.empty()) error.message += fmt::format(" ({})", problems);
  }
  throw RemoteError(std::move(error));
}

std::string RemoteInferenceSession::routing_problems() const {
  std::string out;
  for (const auto& status : client_.peers()) {
    std::string problem;
    if (!status.info) {
      problem = fmt::format("{}: {}", status.address, status.error);
    } else if (status.info->model_id != config_.model_id) {
      problem = fmt::format("{} serves another model: fingerprint {}, this client's model has {}", status.address,
                            status.info->model_id, config_.model_id);
    }
    if (problem.empty()) continue;
    if (!out.empty()) out += "; ";
    out += problem;
  }
  return out;
}

}  // namespace bouquet::net

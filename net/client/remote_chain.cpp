#include "net/client/remote_chain.h"

#include <fmt/core.h>
#include <asio/post.hpp>

#include <algorithm>
#include <set>

#include "gpu/errors.h"
#include "gpu/tensor_bridge.h"

namespace bouquet::net {
namespace {

using core::Error;
using core::ErrorCode;

// Our own request ids: top two bits set, so they never collide with SwarmClient::call()'s (top
// bit only) and its replies reach our listener instead of a pending call.
constexpr uint64_t kOwnIdBits = (uint64_t{3} << 62);

core::PassSessionConfig pass_config(const RemoteChainConfig& c, uint32_t hidden_size) {
  core::PassSessionConfig out;
  out.model_id = c.model_id;
  out.num_blocks = c.num_blocks;
  out.hidden_size = hidden_size;
  out.compression = c.compression;
  out.reply_timeout_s = c.timeout_s;
  out.max_tokens_per_request = c.max_tokens_per_request;
  out.max_retries = static_cast<uint32_t>(std::max(c.max_retries, 0));
  out.request_id_base = kOwnIdBits;
  out.spot_check_rate = c.spot_check_rate;
  out.spot_check_seed = c.seed;
  return out;
}

}  // namespace

RemoteChain::RemoteChain(SwarmClient& client, RemoteChainConfig config)
    : client_(client),
      config_(std::move(config)),
      rng_(config_.seed),
      timers_(client.io(), client.clock(), [this](core::TimerId id) { feed(core::TimerFired{id}); }) {
  BOUQUET_CHECK(config_.num_blocks > 0, "a remote chain over no blocks");
  listener_ = client_.add_listener([this](const core::Input& input) {
    if (session_) feed(input);
  });
}

RemoteChain::~RemoteChain() {
  client_.remove_listener(listener_);
  *alive_ = false;
}

std::vector<PassRetry> RemoteChain::retries() const {
  std::vector<PassRetry> out;
  if (!session_) return out;
  for (const core::PassRecovery& r : session_->recoveries()) {
    PassRetry retry{r.span, client_.address_of(r.failed_peer), r.cause.to_string(), {}};
    for (const core::Hop& hop : r.replacement) retry.replacement.push_back(client_.address_of(hop.peer));
    out.push_back(std::move(retry));
  }
  return out;
}

std::vector<SpotCheckReport> RemoteChain::spot_checks() const {
  std::vector<SpotCheckReport> out;
  if (session_) {
    for (const core::SpotCheck& c : session_->spot_checks()) out.push_back(spot_check_report(client_, c));
  }
  return out;
}

std::vector<std::string> RemoteChain::impostors() const {
  std::set<std::string> out;
  // Refused when the client asked who they are (address pinning), before any pass...
  for (const auto& [address, pin] : client_.pins()) {
    if (!pin.key) out.insert(address);
  }
  // ...or at a forward or backward.
  if (session_) {
    for (core::PeerId peer : session_->impostors()) out.insert(client_.address_of(peer));
  }
  return {out.begin(), out.end()};
}

std::string RemoteChain::describe_chain() const {
  std::set<core::Chain, decltype([](const core::Chain& a, const core::Chain& b) {
             return std::lexicographical_compare(
                 a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
                   return x.peer != y.peer ? x.peer < y.peer : x.span.begin < y.span.begin;
                 });
           })>
      distinct;
  std::string out;
  for (const core::Chain& chain : chains()) {
    if (!distinct.insert(chain).second) continue;
    std::string line;
    for (const core::Hop& hop : chain) {
      line += fmt::format("{}{} {}", line.empty() ? "" : " -> ", client_.address_of(hop.peer), hop.span.to_string());
    }
    out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

uint32_t RemoteChain::request_tokens_max() const {
  uint32_t cap = config_.max_tokens_per_request;
  for (const PeerStatus& status : client_.peers()) {
    if (!status.info || status.info->request_tokens_max == 0) continue;
    // A server announces what it refuses (over_limit): split to it rather than be refused.
    cap = cap == 0 ? status.info->request_tokens_max : std::min(cap, status.info->request_tokens_max);
  }
  return cap;
}

at::Tensor RemoteChain::forward(const at::Tensor& hidden, const at::Tensor& prompts) {
  if (!client_.discovered()) client_.discover();
  const at::Tensor x = hidden.detach().to(at::kCPU, at::kFloat).contiguous();
  if (x.dim() != 3 || x.size(0) == 0 || x.size(1) == 0) {
    throw gpu::InputError("a pass needs hidden states [batch > 0, tokens > 0, hidden]");
  }
  std::optional<core::Activation> deep;
  if (prompts.defined()) {
    const at::Tensor p = prompts.detach().to(at::kCPU, at::kFloat).contiguous();
    if (p.dim() != 4 || p.size(0) != config_.num_blocks || (p.size(1) != 1 && p.size(1) != x.size(0)) ||
        p.size(3) != x.size(2)) {
      throw gpu::InputError(
          fmt::format("deep prompts must be [{} blocks, batch or 1, prefix, hidden]", config_.num_blocks));
    }
    deep = activation_from_tensor(p, config_.compression);
  }
  const auto hidden_size = static_cast<uint32_t>(x.size(2));
  if (!session_) session_.emplace(pass_config(config_, hidden_size));
  if (hidden_size != session_->config().hidden_size) {
    throw gpu::InputError(
        fmt::format("hidden states of width {}, not the model's {}", hidden_size, session_->config().hidden_size));
  }
  session_->set_max_tokens_per_request(request_tokens_max());
  forward_done_.reset();
  failure_.reset();
  feed(core::ForwardRequested{activation_from_tensor(x, config_.compression), std::move(deep)});
  wait("finish the forward pass");
  if (failure_) throw_failure();
  at::Tensor out = tensor_from_activation(*forward_done_).to(at::kFloat);
  forward_done_.reset();
  return out;
}

gpu::SpanRunner::Gradients RemoteChain::backward(const at::Tensor& grad_outputs) {
  if (!session_ || session_->phase() != core::PassSession::Phase::forward_done) {
    throw gpu::InputError("backward needs a finished forward first");
  }
  const at::Tensor g = grad_outputs.detach().to(at::kCPU, at::kFloat).contiguous();
  backward_done_.reset();
  failure_.reset();
  feed(core::BackwardRequested{activation_from_tensor(g, config_.compression)});
  wait("finish the backward pass");
  if (failure_) throw_failure();
  gpu::SpanRunner::Gradients out;
  out.hidden = tensor_from_activation(backward_done_->grad_inputs).to(at::kFloat);
  if (backward_done_->grad_prompts) out.prompts = tensor_from_activation(*backward_done_->grad_prompts).to(at::kFloat);
  backward_done_.reset();
  return out;
}

void RemoteChain::feed(const core::Input& input) {
  std::vector<core::Effect> effects;
  session_->handle(client_.clock().now(), input, effects);
  carry_out(effects);
}

void RemoteChain::carry_out(std::vector<core::Effect>& effects) {
  for (core::Effect& effect : effects) {
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
        feed(client_.plan_route(plan, core::Routing::throughput, rng_));
      });
    } else if (auto* forward = std::get_if<core::ForwardDone>(&effect)) {
      forward_done_ = std::move(forward->outputs);
    } else if (auto* backward = std::get_if<core::BackwardDone>(&effect)) {
      backward_done_ = std::move(*backward);
    } else if (auto* failed = std::get_if<core::PassFailed>(&effect)) {
      failure_ = failed->error;
    }
  }
}

void RemoteChain::wait(const char* what) {
  // The core's own deadlines end every wait; this bound only guards against a driver bug.
  const double bound_s = 2 * config_.timeout_s * (config_.max_retries + 2) * config_.num_blocks + 60;
  const bool reported = client_.run_until([&] { return failure_ || forward_done_ || backward_done_; }, bound_s);
  if (!reported) throw RemoteError(Error{ErrorCode::timeout, fmt::format("could not {} within {} s", what, bound_s)});
}

void RemoteChain::throw_failure() const {
  Error error = *failure_;
  // The core names servers by peer id; people know them by address.
  for (const auto& status : client_.peers()) {
    const std::string id = status.peer.to_string();
    for (size_t at = error.message.find(id); at != std::string::npos; at = error.message.find(id)) {
      error.message.replace(at, id.size(), status.address);
    }
  }
  throw RemoteError(std::move(error));
}

}  // namespace bouquet::net

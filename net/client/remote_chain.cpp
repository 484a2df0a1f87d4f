#include "net/client/remote_chain.h"

#include <fmt/core.h>

#include <algorithm>
#include <optional>

#include "core/pass_route.h"
#include "core/throughput_route.h"
#include "gpu/tensor_bridge.h"

namespace bouquet::net {
namespace {

using core::Error;
using core::ErrorCode;

// Our own request ids: top two bits set, so they never collide with SwarmClient::call()'s (top
// bit only) and its replies reach our listener instead of a pending call.
constexpr uint64_t kOwnIdBits = (uint64_t{3} << 62);

// A retryable failure of one hop: the server's fault, not the request's.
struct HopFailed {
  std::string cause;
};

uint64_t reply_id(const core::Message& message) {
  if (auto* m = std::get_if<core::ForwardResult>(&message)) return m->request_id;
  if (auto* m = std::get_if<core::BackwardResult>(&message)) return m->request_id;
  if (auto* m = std::get_if<core::ErrorReply>(&message)) return m->request_id;
  return 0;
}

}  // namespace

RemoteChain::RemoteChain(SwarmClient& client, RemoteChainConfig config)
    : client_(client), config_(std::move(config)), rng_(config_.seed) {
  BOUQUET_CHECK(config_.num_blocks > 0, "a remote chain over no blocks");
}

std::string RemoteChain::describe_chain() const {
  std::string out;
  for (const core::Hop& hop : chain_) {
    out += fmt::format("{}{} {}", out.empty() ? "" : " -> ", client_.address_of(hop.peer), hop.span.to_string());
  }
  return out;
}

void RemoteChain::plan() {
  if (!client_.discovered()) client_.discover();
  const core::Time now = client_.clock().now();
  const auto records = client_.records();
  const core::PlanRoute plan{0, config_.model_id, {0, config_.num_blocks}, bans_.active(now), 0};
  auto chain = core::plan_chain_by_throughput(records, plan, now, rng_);
  if (!chain.ok()) throw RemoteError(chain.error());
  chain_ = std::move(chain).value();
}

void RemoteChain::replace_hop(size_t index, const std::string& cause) {
  const core::Hop failed = chain_[index];
  const std::string who = client_.address_of(failed.peer);
  if (++failures_this_pass_ > config_.max_retries) {
    throw RemoteError(Error{ErrorCode::timeout, fmt::format("giving up after {} failed hops in one pass; the last: "
                                                            "blocks {} on {}: {}", failures_this_pass_,
                                                            failed.span.to_string(), who, cause)});
  }
  const core::Time now = client_.clock().now();
  bans_.ban(failed.peer, now);
  // With a DHT directory, re-plan from what the swarm says now (servers may have come or gone).
  if (client_.has_directory()) client_.refresh_from_directory();
  const auto records = client_.records();
  const core::PlanRoute plan{0, config_.model_id, failed.span, bans_.active(now), 0};
  auto replanned = core::replan_hop(chain_, index, records, plan, now, rng_);
  if (!replanned.ok()) {
    throw RemoteError(Error{replanned.error().code,
                            fmt::format("blocks {} failed on {} ({}) and {}", failed.span.to_string(), who, cause,
                                        replanned.error().message)});
  }
  const size_t added = replanned.value().size() + 1 - chain_.size();
  PassRetry retry{failed.span, who, cause, {}};
  for (size_t k = index; k < index + added; ++k) retry.replacement.push_back(client_.address_of(replanned.value()[k].peer));
  retries_.push_back(std::move(retry));
  chain_ = std::move(replanned).value();
}

at::Tensor RemoteChain::hop_prompts(const core::Hop& hop) const {
  if (!prompts_.defined()) return {};
  return prompts_.narrow(0, hop.span.begin, hop.span.size());
}

uint32_t RemoteChain::request_tokens_max(core::PeerId peer) const {
  uint32_t cap = config_.max_tokens_per_request;
  for (const PeerStatus& status : client_.peers()) {
    if (status.peer != peer || !status.info || status.info->request_tokens_max == 0) continue;
    // The server announces what it refuses (over_limit): split to it rather than be refused.
    cap = cap == 0 ? status.info->request_tokens_max : std::min(cap, status.info->request_tokens_max);
  }
  return cap;
}

at::Tensor RemoteChain::run_hop(const core::Hop& hop, const at::Tensor& inputs, const at::Tensor* grad_outputs,
                                const at::Tensor& prompts, at::Tensor* grad_prompts) {
  const auto rows = static_cast<uint32_t>(inputs.size(0));
  const auto tokens = static_cast<uint32_t>(inputs.size(1));
  struct Sub {
    int64_t begin = 0;
    int64_t rows = 0;
    std::optional<core::Message> reply;
    std::optional<Error> error;
  };
  std::vector<Sub> subs;
  std::map<uint64_t, size_t> by_id;
  const size_t listener = client_.add_listener([&](const core::Input& input) {
    if (const auto* received = std::get_if<core::MessageReceived>(&input)) {
      const auto it = by_id.find(reply_id(received->message));
      if (received->from != hop.peer || it == by_id.end()) return;
      Sub& sub = subs[it->second];
      if (const auto* error = std::get_if<core::ErrorReply>(&received->message)) sub.error = error->error;
      else sub.reply = received->message;
    } else if (const auto* lost = std::get_if<core::PeerUnreachable>(&input)) {
      if (lost->peer != hop.peer) return;
      for (Sub& sub : subs) {
        if (!sub.reply && !sub.error) sub.error = Error{ErrorCode::peer_unreachable, lost->reason};
      }
    }
  });
  struct Unlisten {
    SwarmClient& client;
    size_t id;
    ~Unlisten() { client.remove_listener(id); }
  } unlisten{client_, listener};

  const bool shared_prompts = prompts.defined() && prompts.size(1) == 1;
  int64_t begin = 0;
  for (uint32_t size : core::split_batch(rows, tokens, request_tokens_max(hop.peer))) {
    const uint64_t id = kOwnIdBits | next_request_++;
    by_id[id] = subs.size();
    subs.push_back(Sub{begin, size, std::nullopt, std::nullopt});
    std::optional<core::Activation> sub_prompts;
    if (prompts.defined()) {
      sub_prompts = activation_from_tensor(shared_prompts ? prompts : prompts.narrow(1, begin, size),
                                           config_.compression);
    }
    const at::Tensor sub_inputs = inputs.narrow(0, begin, size);
    if (grad_outputs) {
      core::BackwardRequest request;
      request.request_id = id;
      request.model_id = config_.model_id;
      request.span = hop.span;
      request.reply_compression = config_.compression;
      request.hidden_states = activation_from_tensor(sub_inputs, config_.compression);
      request.grad_outputs = activation_from_tensor(grad_outputs->narrow(0, begin, size), config_.compression);
      request.prompts = std::move(sub_prompts);
      client_.send(hop.peer, request);
    } else {
      core::ForwardRequest request;
      request.request_id = id;
      request.model_id = config_.model_id;
      request.span = hop.span;
      request.reply_compression = config_.compression;
      request.hidden_states = activation_from_tensor(sub_inputs, config_.compression);
      request.prompts = std::move(sub_prompts);
      client_.send(hop.peer, request);
    }
    ++requests_sent_;
    begin += size;
  }
  client_.run_until([&] {
    for (const Sub& sub : subs) if (!sub.reply && !sub.error) return false;
    return true;
  }, config_.timeout_s);

  const std::string who = client_.address_of(hop.peer);
  const char* what = grad_outputs ? "backward" : "forward";
  std::vector<at::Tensor> outputs;
  std::vector<at::Tensor> prompt_grads;
  for (const Sub& sub : subs) {
    if (sub.error) {
      if (sub.error->code == ErrorCode::bad_request || sub.error->code == ErrorCode::over_limit) {
        // The request itself is wrong, or one sequence is longer than the server takes in one
        // request (whole sequences are never split): another server would refuse it too.
        throw RemoteError(Error{sub.error->code, fmt::format("server {} refused {} of blocks {}: {}", who, what,
                                                             hop.span.to_string(), sub.error->message)});
      }
      throw HopFailed{sub.error->to_string()};
    }
    if (!sub.reply) throw HopFailed{fmt::format("no answer to {} within {} s", what, config_.timeout_s)};
    const std::vector<int64_t> expected{sub.rows, inputs.size(1), inputs.size(2)};
    const core::Activation* result = nullptr;
    const core::Activation* result_prompts = nullptr;
    if (const auto* f = std::get_if<core::ForwardResult>(&*sub.reply); f && !grad_outputs) result = &f->hidden_states;
    if (const auto* b = std::get_if<core::BackwardResult>(&*sub.reply); b && grad_outputs) {
      result = &b->grad_inputs;
      if (b->grad_prompts) result_prompts = &*b->grad_prompts;
    }
    if (!result) throw HopFailed{fmt::format("answered {} with {}", what, core::to_string(core::message_type(*sub.reply)))};
    at::Tensor out = tensor_from_activation(*result);
    if (out.sizes().vec() != expected) throw HopFailed{fmt::format("{} reply has another shape than the request", what)};
    outputs.push_back(out.to(at::kFloat));
    if (grad_prompts && prompts.defined()) {
      if (!result_prompts) throw HopFailed{"backward reply without the deep prompts' gradient"};
      at::Tensor g = tensor_from_activation(*result_prompts).to(at::kFloat);
      const at::Tensor& sent = shared_prompts ? prompts : prompts.narrow(1, sub.begin, sub.rows);
      if (g.sizes() != sent.sizes()) throw HopFailed{"the deep prompts' gradient has another shape than the prompts"};
      prompt_grads.push_back(g);
    }
  }
  if (grad_prompts && prompts.defined()) {
    if (shared_prompts) {
      // Prompts shared by every sequence: their gradient is the sum over the sub-batches.
      at::Tensor total = prompt_grads.front().clone();
      for (size_t k = 1; k < prompt_grads.size(); ++k) total.add_(prompt_grads[k]);
      *grad_prompts = total;
    } else {
      *grad_prompts = at::cat(prompt_grads, 1);
    }
  }
  return outputs.size() == 1 ? outputs.front() : at::cat(outputs, 0);
}

at::Tensor RemoteChain::forward(const at::Tensor& hidden, const at::Tensor& prompts) {
  failures_this_pass_ = 0;
  if (chain_.empty()) plan();
  prompts_ = prompts.defined() ? prompts.detach().to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  if (prompts_.defined() && (prompts_.dim() != 4 || prompts_.size(0) != config_.num_blocks)) {
    throw gpu::InputError(fmt::format("deep prompts must be [{} blocks, batch or 1, prefix, hidden]",
                                      config_.num_blocks));
  }
  inputs_.clear();
  at::Tensor x = hidden.detach().to(at::kCPU, at::kFloat).contiguous();
  size_t i = 0;
  while (i < chain_.size()) {
    const core::Hop hop = chain_[i];
    inputs_[hop.span.begin] = x;
    try {
      x = run_hop(hop, x, nullptr, hop_prompts(hop), nullptr);
      ++i;
    } catch (const HopFailed& failed) {
      replace_hop(i, failed.cause);  // chain_[i] is now the first replacement hop
    }
  }
  return x;
}

gpu::SpanRunner::Gradients RemoteChain::backward(const at::Tensor& grad_outputs) {
  if (inputs_.empty()) throw gpu::InputError("backward before any forward");
  failures_this_pass_ = 0;
  at::Tensor grad = grad_outputs.detach().to(at::kCPU, at::kFloat).contiguous();
  at::Tensor grad_prompts = prompts_.defined() ? at::zeros_like(prompts_) : at::Tensor();
  size_t i = chain_.size();  // hops before i still need their backward
  while (i > 0) {
    const size_t before = chain_.size();
    try {
      if (inputs_.count(chain_[i - 1].span.begin) == 0) {
        // A replacement split the span: recompute the inner hops' inputs from the span's start.
        size_t j = i - 1;
        while (inputs_.count(chain_[j].span.begin) == 0) --j;
        for (size_t k = j; k + 1 < i; ++k) {
          const core::Hop hop = chain_[k];
          try {
            inputs_[chain_[k + 1].span.begin] = run_hop(hop, inputs_.at(hop.span.begin), nullptr, hop_prompts(hop), nullptr);
          } catch (const HopFailed& failed) {
            replace_hop(k, failed.cause);
            throw HopFailed{""};  // handled below: indices moved, start over from the same place
          }
        }
      }
      const core::Hop hop = chain_[i - 1];
      at::Tensor hop_grad_prompts;
      try {
        grad = run_hop(hop, inputs_.at(hop.span.begin), &grad, hop_prompts(hop), &hop_grad_prompts);
      } catch (const HopFailed& failed) {
        replace_hop(i - 1, failed.cause);
        throw HopFailed{""};
      }
      if (grad_prompts.defined()) grad_prompts.narrow(0, hop.span.begin, hop.span.size()).copy_(hop_grad_prompts);
      --i;
    } catch (const HopFailed&) {
      i += chain_.size() - before;  // the hop that was at i - 1 is now the last of its replacements
    }
  }
  return {grad, grad_prompts};
}

}  // namespace bouquet::net

#include "sim/server_node.h"

#include "core/check.h"
#include "core/server_memory.h"
#include "core/throughput.h"
#include "sim/platform.h"

#include <fmt/core.h>

#include <algorithm>

namespace bouquet::sim {
namespace {

constexpr double kWorkspaceShare = 0.1;          // of GPU memory, kept for activations
constexpr uint64_t kCacheTokensPerBlock = 8192;  // what a server keeps room for when sizing a span
constexpr uint32_t kForwardProbeTokens = 1024;   // the batched forward forward_rps is measured on

core::BalancerNodeConfig balancer_config(const SimContext& context, const ServerConfig& config,
                                         const std::string& host) {
  const Scenario& s = context.scenario;
  const DeviceSpec& gpu = *find_device(config.gpu);
  core::BalancerNodeConfig out;
  out.peer = Transport::peer_of(host);
  out.address = host;
  out.model_id = context.model_id;
  out.model_blocks = static_cast<uint32_t>(context.shape.num_blocks);
  if (config.blocks) {
    out.blocks =
        core::BlockSpan{static_cast<uint32_t>(config.blocks->begin), static_cast<uint32_t>(config.blocks->end)};
  }
  const auto blocks = static_cast<uint32_t>(config.blocks ? config.blocks->end - config.blocks->begin
                                                          : ServerNode::blocks_to_hold(context, config));
  out.num_blocks = blocks;
  // What a real server measures on start, here from the cost model.
  const double step_s = context.cost.block_step(gpu, context.shape, context.format, BlockWork{}).seconds;
  const double forward_s =
      context.cost.block_step(gpu, context.shape, context.format, BlockWork{.new_tokens = kForwardProbeTokens}).seconds;
  out.inference_rps = config.announce_speed_x / step_s;
  const ResolvedLink link = resolve_link(s, config.link);
  out.throughput_rps =
      core::announced_throughput_rps(config.announce_speed_x * kForwardProbeTokens / forward_s, blocks,
                                     std::min(link.up_bps, link.down_bps), static_cast<uint32_t>(context.shape.hidden));
  // Speeds given in the scenario (as `serve --throughput` / `--inference-rps` pin them) win.
  if (config.inference_rps > 0) out.inference_rps = config.announce_speed_x * config.inference_rps;
  if (config.throughput_rps > 0) out.throughput_rps = config.announce_speed_x * config.throughput_rps;
  out.cache_tokens_free = ServerNode::cache_tokens(context, config, blocks);
  out.join_delay_s = s.policies.join_delay_s;
  out.balance_period_s = s.policies.balance_period_s;
  out.balance_quality = s.policies.balancing == "rebalance" ? s.policies.balance_quality : 0.0;
  out.update_period_s = s.directory.update_period_s;
  out.seed = context.rng.derive(out.peer.value).next_u64();
  if (s.policies.placement == "random") out.placement = core::JoinPlacement::random;
  if (auto best = context.best_spans.find(host); !config.blocks && best != context.best_spans.end()) {
    out.blocks = best->second;  // placed in advance by the best placement: pinned
  }
  return out;
}

}  // namespace

namespace {

// The device as the core's memory rule sees it (core/server_memory.h).
core::ServerMemory server_memory(const SimContext& context, const ServerConfig& config) {
  return core::ServerMemory{find_device(config.gpu)->memory_bytes, kWorkspaceShare,
                            context.cost.block_weight_bytes(context.shape, context.format),
                            context.cost.cache_bytes_per_token(context.shape)};
}

}  // namespace

int64_t ServerNode::blocks_to_hold(const SimContext& context, const ServerConfig& config) {
  if (config.num_blocks > 0) return config.num_blocks;
  return core::blocks_that_fit(server_memory(context, config), kCacheTokensPerBlock,
                               static_cast<uint32_t>(context.shape.num_blocks));
}

uint64_t ServerNode::cache_tokens(const SimContext& context, const ServerConfig& config, int64_t blocks) {
  if (config.cache_tokens > 0) return static_cast<uint64_t>(config.cache_tokens);
  return core::cache_tokens_that_fit(server_memory(context, config), static_cast<uint32_t>(blocks));
}

core::ServerCapacity ServerNode::capacity(const SimContext& context, const ServerConfig& config,
                                          const std::string& host) {
  const core::BalancerNodeConfig c = balancer_config(context, config, host);
  return core::ServerCapacity{c.throughput_rps, c.num_blocks};
}

ServerNode::ServerNode(SimContext& context, const ServerConfig& config, const std::string& host)
    : NodeLoop(context.transport, host),
      context_(context),
      config_(config),
      gpu_(*find_device(config.gpu)),
      balancer_(balancer_config(context, config, host)),
      rng_(context.rng.derive(Transport::peer_of(host).value ^ 0x5eedfa11ULL)) {}

void ServerNode::on_start() {
  std::vector<core::Effect> effects;
  balancer_.start(now(), effects);
  carry_out(effects, kBalancerTimers);
}

void ServerNode::on_message(core::PeerId from, core::Message& message) {
  // Before its first span is loaded there is no BlockServer: the sender is told so at once.
  if (!server_) {
    const core::Error error{core::ErrorCode::span_not_served, "this server is still choosing its blocks"};
    if (auto reply = core::refusal(message, error)) transport_.send(self(), from, std::move(*reply));
    return;
  }
  if (dead_) return transport_.send_reset(self(), from);  // connection refused
  if (config_.crash_after_steps > 0 && std::holds_alternative<core::StepRequest>(message) &&
      ++steps_received_ > config_.crash_after_steps) {
    // Dies like `serve --crash-after-steps`' SIGKILL: no reply, caches lost, and every connection
    // reset by the kernel at once (a real client sees the failure within a round trip, not after a
    // timeout).
    dead_ = true;
    server_.reset();
    remember_peer(from);
    for (core::PeerId peer : peers_) transport_.send_reset(self(), peer);
    return;
  }
  remember_peer(from);
  if (fails(message)) {
    // The stage resets: a fresh server on the same blocks (caches lost), the activation dropped,
    // its sender told through a reset connection.
    start_server(server_->config().span);
    transport_.send_reset(self(), from);
    return;
  }
  feed_server(core::MessageReceived{from, std::move(message)});
}

void ServerNode::on_reset(core::PeerId from) {
  if (server_) feed_server(core::PeerUnreachable{from, "connection reset"});
}

bool ServerNode::fails(const core::Message& message) {
  const double p = context_.scenario.churn.activation_failure_probability;
  if (p <= 0) return false;
  const bool activation = std::holds_alternative<core::StepRequest>(message) ||
                          std::holds_alternative<core::ForwardRequest>(message) ||
                          std::holds_alternative<core::BackwardRequest>(message);
  return activation && rng_.bernoulli(p);
}

void ServerNode::on_timer(uint32_t component, uint64_t timer) {
  if (dead_) return;
  if (component == kBalancerTimers) return feed_balancer(core::TimerFired{timer});
  if (server_ && component == 1 + generation_) feed_server(core::TimerFired{timer});
}

void ServerNode::feed_balancer(const core::Input& input) {
  balancer_.set_cache_tokens_free(server_ ? server_->cache_tokens_free() : 0);
  balancer_.set_load(server_ ? server_->load(now()) : core::ServerLoad{});
  std::vector<core::Effect> effects;
  balancer_.handle(now(), input, effects);
  carry_out(effects, kBalancerTimers);
}

void ServerNode::feed_server(const core::Input& input) {
  std::vector<core::Effect> effects;
  server_->handle(now(), input, effects);
  carry_out(effects, 1 + generation_);
}

void ServerNode::carry_out(std::vector<core::Effect>& effects, uint32_t timers) {
  for (auto& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      transport_.send(self(), send->to, std::move(send->message));
    } else if (auto* timer = std::get_if<core::SetTimer>(&effect)) {
      set_timer(timers, timer->timer, timer->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      cancel_timer(timers, cancel->timer);
    } else if (auto* start = std::get_if<core::StartCompute>(&effect)) {
      start_compute({start->request});
    } else if (auto* batch = std::get_if<core::StartBatch>(&effect)) {
      start_compute(batch->requests);
    } else if (std::holds_alternative<core::DropCache>(effect)) {
      // Cache memory is accounted by the core's admission; nothing to free in a simulation.
    } else if (auto* announce = std::get_if<core::Announce>(&effect)) {
      context_.directory.announce(now(), announce->record);
    } else if (auto* lookup = std::get_if<core::DirectoryLookup>(&effect)) {
      // The answer holds what was visible when the lookup left, a few round trips later.
      // Moved, never copied, on its way: it holds a record per server of the swarm.
      core::DirectoryAnswer answer{lookup->lookup_id, context_.directory.lookup(now(), lookup->model_id)};
      at(now() + context_.directory.lookup_delay_s(),
         [this, answer = std::move(answer)]() mutable { feed_balancer(std::move(answer)); });
    } else if (auto* move = std::get_if<core::MoveToSpan>(&effect)) {
      move_to(move->span);
    } else {
      BOUQUET_CHECK(false, "a server component asked for an effect its driver does not carry out");
    }
  }
}

void ServerNode::move_to(core::BlockSpan span) {
  // The old span keeps serving while the new one loads (as `bouquet serve` does). Blocks shared
  // with what is loaded stay; the others are read at the load bandwidth. Without one, the first
  // span is loaded before the run and moves are instantaneous.
  uint32_t kept = 0;
  if (loaded_) {
    const uint32_t begin = std::max(loaded_->begin, span.begin);
    const uint32_t end = std::min(loaded_->end, span.end);
    kept = end > begin ? end - begin : 0;
  }
  const double load_s =
      config_.load_bps > 0 ? context_.cost.load_s(context_.shape, context_.format, span.size() - kept, config_.load_bps)
                           : 0.0;
  const uint64_t move = ++moves_;
  at(now() + load_s, [this, span, move] {
    if (move != moves_) return;  // moved again meanwhile
    if (server_) {
      // Each of the old span's clients is told, per session and request, and recovers elsewhere.
      std::vector<core::Effect> effects;
      server_->leave(fmt::format("the server moved to blocks {}", span.to_string()), effects);
      carry_out(effects, 1 + generation_);
    }
    loaded_ = span;
    spans_served_.push_back(span);
    start_server(span);
    feed_balancer(core::SpanLoaded{span});
  });
}

void ServerNode::start_server(core::BlockSpan span) {
  ++generation_;  // computations and timers of a previous server are ignored from now on
  core::BlockServerConfig c;
  c.model_id = context_.model_id;
  c.span = span;
  c.hidden_size = static_cast<uint32_t>(context_.shape.hidden);
  c.cache_tokens = cache_tokens(context_, config_, span.size());
  c.compute_slots = static_cast<uint32_t>(config_.compute_slots);
  const PolicyConfig& policies = context_.scenario.policies;
  c.max_batch = static_cast<uint32_t>(config_.max_batch > 0 ? config_.max_batch : policies.max_batch);
  c.batch_wait_s = (config_.batch_wait_ms >= 0 ? config_.batch_wait_ms : policies.batch_wait_ms) / 1000.0;
  const int64_t chunk = config_.prefill_chunk >= -1 ? config_.prefill_chunk : policies.prefill_chunk;
  if (chunk >= 0) c.prefill_chunk = static_cast<uint32_t>(chunk);  // else the core's default
  server_ = std::make_unique<core::BlockServer>(c);
}

void ServerNode::start_compute(const std::vector<core::ComputeRequest>& requests) {
  // A batch is charged as one pass over the span's weights (cost_model.h).
  std::vector<BlockWork> works;
  for (const core::ComputeRequest& request : requests) {
    BlockWork work;
    work.batch = request.batch;
    work.new_tokens = request.new_tokens;
    work.cache_tokens = request.cache_length;
    work.backward = request.kind == core::ComputeKind::backward;
    works.push_back(work);
  }
  const core::BlockSpan span = requests.front().span;
  const double seconds = context_.cost.batched_span_step_s(gpu_, context_.shape, context_.format, span.size(), works);
  std::vector<core::ComputeFinished> done;
  for (const core::ComputeRequest& request : requests) {
    done.push_back(core::ComputeFinished{
        request.task_id, core::ComputeOutput{core::make_sized_activation(request.inputs.shape, request.inputs.dtype,
                                                                         request.output_compression),
                                             std::nullopt}});
  }
  const uint32_t generation = generation_;
  compute(seconds, [this, done, generation] {
    for (const auto& d : done) {
      if (server_ && generation == generation_) feed_server(d);
    }
  });
}

}  // namespace bouquet::sim

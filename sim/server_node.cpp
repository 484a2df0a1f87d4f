#include "sim/server_node.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>

namespace bouquet::sim {
namespace {

core::BlockServerConfig server_config(const SimContext& context, const ServerConfig& config) {
  core::BlockServerConfig out;
  out.model_id = context.model_id;
  out.span = core::BlockSpan{static_cast<uint32_t>(config.blocks->begin),
                             static_cast<uint32_t>(config.blocks->end)};
  out.hidden_size = static_cast<uint32_t>(context.shape.hidden);
  out.cache_tokens = ServerNode::cache_tokens(context, config);
  out.compute_slots = static_cast<uint32_t>(config.compute_slots);
  return out;
}

}  // namespace

uint64_t ServerNode::cache_tokens(const SimContext& context, const ServerConfig& config) {
  if (config.cache_tokens > 0) return static_cast<uint64_t>(config.cache_tokens);
  const DeviceSpec& gpu = *find_device(config.gpu);
  const double blocks = static_cast<double>(config.blocks->end - config.blocks->begin);
  const double free_bytes =
      0.9 * gpu.memory_bytes - blocks * context.cost.block_weight_bytes(context.shape, context.format);
  const double per_token = blocks * context.cost.cache_bytes_per_token(context.shape);
  return static_cast<uint64_t>(std::max(0.0, std::floor(free_bytes / per_token)));
}

ServerNode::ServerNode(SimContext& context, const ServerConfig& config, const std::string& host)
    : NodeLoop(context.transport, host),
      context_(context),
      config_(config),
      gpu_(*find_device(config.gpu)),
      server_(server_config(context, config)) {}

void ServerNode::on_start() {
  if (config_.load_bps <= 0) return announce();
  // Joining: visible as such (routing skips it) while the blocks load.
  const double load_s = context_.cost.load_s(context_.shape, context_.format,
                                             server_.config().span.size(), config_.load_bps);
  state_ = core::ServerState::joining;
  announce();
  at(now() + load_s, [this] {
    state_ = core::ServerState::online;
    announce();
  });
}

void ServerNode::announce() {
  const core::BlockServerConfig& c = server_.config();
  core::ServerRecord record;
  record.peer = self();
  record.address = host();
  record.span = c.span;
  record.state = state_;
  const double step_s =
      context_.cost.block_step(gpu_, context_.shape, context_.format, BlockWork{}).seconds;
  record.inference_rps = 1.0 / step_s;
  record.throughput_rps = record.inference_rps;
  record.cache_tokens_free = server_.cache_tokens_free();
  record.model_id = c.model_id;
  record.version = c.version;
  record.expires_at = now() + context_.scenario.directory.record_ttl_s;
  context_.directory.announce(now(), record);
  set_timer(kAnnounceTimer, 0, now() + context_.scenario.directory.update_period_s);  // re-arms
}

void ServerNode::on_message(core::PeerId from, core::Message& message) {
  feed(core::MessageReceived{from, std::move(message)});
}

void ServerNode::on_timer(uint32_t component, uint64_t timer) {
  if (component == kAnnounceTimer) return announce();
  feed(core::TimerFired{timer});
}

void ServerNode::feed(const core::Input& input) {
  std::vector<core::Effect> effects;
  server_.handle(now(), input, effects);
  for (auto& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      transport_.send(self(), send->to, std::move(send->message));
    } else if (auto* timer = std::get_if<core::SetTimer>(&effect)) {
      set_timer(kServerTimers, timer->timer, timer->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      cancel_timer(kServerTimers, cancel->timer);
    } else if (auto* start = std::get_if<core::StartCompute>(&effect)) {
      start_compute(start->request);
    } else if (std::holds_alternative<core::DropCache>(effect)) {
      // Cache memory is accounted by the core's admission; nothing to free in a simulation.
    } else {
      BOUQUET_CHECK(false, "a block server asked for an effect its driver does not carry out");
    }
  }
}

void ServerNode::start_compute(const core::ComputeRequest& request) {
  BlockWork work;
  work.batch = request.batch;
  work.new_tokens = request.new_tokens;
  work.cache_tokens = request.cache_length;
  work.backward = request.kind == core::ComputeKind::backward;
  const double seconds = context_.cost.span_step_s(gpu_, context_.shape, context_.format,
                                                   request.span.size(), work);
  const core::TaskId task = request.task_id;
  core::Activation outputs = core::make_sized_activation(request.inputs.shape, request.inputs.dtype,
                                                         request.output_compression);
  compute(seconds, [this, task, outputs] {
    feed(core::ComputeFinished{task, core::ComputeOutput{outputs, std::nullopt}});
  });
}

}  // namespace bouquet::sim

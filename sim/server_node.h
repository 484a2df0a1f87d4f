// A simulated server: the core's BlockServer on a SimGrid host. The driver feeds it every message
// and timer, and carries out its effects: messages go out charged at their encoded size, each
// StartCompute becomes an execution lasting what the cost model says for that request on this
// GPU, and ComputeFinished returns an output handle of the input's shape. It also announces the
// server's record in the modelled directory on joining and every update period; a server with a
// load bandwidth announces itself joining until its blocks are loaded (bytes over bandwidth).
#pragma once

#include "core/block_server.h"
#include "sim/node_loop.h"
#include "sim/sim_context.h"

namespace bouquet::sim {

class ServerNode final : public NodeLoop {
 public:
  ServerNode(SimContext& context, const ServerConfig& config, const std::string& host);

  // Cache budget in tokens per block: the configured one, or what the GPU memory holds after
  // the weights (keeping a tenth of it for activations and workspace).
  static uint64_t cache_tokens(const SimContext& context, const ServerConfig& config);

 protected:
  void on_start() override;
  void on_message(core::PeerId from, core::Message& message) override;
  void on_timer(uint32_t component, uint64_t timer) override;
  bool finished() const override { return false; }  // servers run until the simulation ends

 private:
  static constexpr uint32_t kServerTimers = 0;
  static constexpr uint32_t kAnnounceTimer = 1;

  void feed(const core::Input& input);
  void start_compute(const core::ComputeRequest& request);
  void announce();

  SimContext& context_;
  const ServerConfig& config_;
  const DeviceSpec& gpu_;
  core::BlockServer server_;
  core::ServerState state_ = core::ServerState::online;
};

}  // namespace bouquet::sim

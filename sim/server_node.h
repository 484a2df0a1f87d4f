// A simulated server: the core's BalancerNode decides where and when it serves, the core's
// BlockServer serves. The driver feeds them every message, timer and directory answer, and carries
// out their effects: messages go out charged at their encoded size; each StartCompute becomes an
// execution lasting what the cost model gives for that request on this GPU, and ComputeFinished
// returns an output handle of the input's shape; Announce and DirectoryLookup go to the modelled
// directory; MoveToSpan loads the blocks it does not hold yet (bytes over the load bandwidth),
// starts a fresh BlockServer for the span (the old span's sessions end) and reports SpanLoaded.
// The numbers the balancer announces come from the cost model: inference_rps from a one-token
// cached step, forward_rps from a 1024-token forward, through the core's throughput formula.
#pragma once

#include "core/balancer_node.h"
#include "core/block_server.h"
#include "sim/node_loop.h"
#include "sim/sim_context.h"

#include <memory>
#include <optional>
#include <set>
#include <unordered_set>

namespace bouquet::sim {

class ServerNode final : public NodeLoop {
 public:
  ServerNode(SimContext& context, const ServerConfig& config, const std::string& host);

  // Blocks an unpinned server takes: the configured number, else as many as its GPU holds with
  // room for 8192 cache tokens per block (a tenth of the memory kept for activations).
  static int64_t blocks_to_hold(const SimContext& context, const ServerConfig& config);
  // Cache budget in tokens per block for a span of `blocks`: the configured one, or what the GPU
  // memory holds after the weights (a tenth kept for activations and workspace).
  static uint64_t cache_tokens(const SimContext& context, const ServerConfig& config, int64_t blocks);

 protected:
  void on_start() override;
  void on_message(core::PeerId from, core::Message& message) override;
  void on_timer(uint32_t component, uint64_t timer) override;
  void on_reset(core::PeerId from) override;
  bool finished() const override { return false; }  // servers run until the simulation ends

 public:
  // What the balancer of this server announces and how many blocks it holds (for best placement,
  // computed before the run).
  static core::ServerCapacity capacity(const SimContext& context, const ServerConfig& config, const std::string& host);

  const core::BalancerNode& balancer() const { return balancer_; }
  // The blocks this process serves now: none while it loads or moves.
  std::optional<core::BlockSpan> serving() const {
    return server_ ? std::optional<core::BlockSpan>(server_->config().span) : std::nullopt;
  }
  // Every span this process started serving, in order (its first, then each move).
  const std::vector<core::BlockSpan>& spans_served() const { return spans_served_; }

 private:
  static constexpr uint32_t kBalancerTimers = 0;  // BlockServer timers use 1 + its generation

  void feed_balancer(const core::Input& input);
  void feed_server(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects, uint32_t timers);
  void start_compute(const std::vector<core::ComputeRequest>& requests);
  void move_to(core::BlockSpan span);
  void start_server(core::BlockSpan span);
  // Injected failure (ChurnConfig): true when this activation resets the server.
  bool fails(const core::Message& message);

  SimContext& context_;
  const ServerConfig& config_;
  const DeviceSpec& gpu_;
  core::BalancerNode balancer_;
  std::unique_ptr<core::BlockServer> server_;  // none while loading
  uint32_t generation_ = 0;                    // bumps with every span served
  std::optional<core::BlockSpan> loaded_;      // blocks in GPU memory
  uint64_t moves_ = 0;                         // bumps per MoveToSpan: only the latest load installs
  std::vector<core::BlockSpan> spans_served_;
  core::Rng rng_;               // draws injected failures
  int64_t steps_received_ = 0;  // for config_.crash_after_steps
  // Killed (crash_after_steps): the process is gone, so its kernel closes every connection it had
  // (peers_) and refuses new ones; the host stays up. Its record stays in the directory until it
  // expires, as a killed server's does.
  bool dead_ = false;
  std::set<core::PeerId> peers_;                   // in id order: resets go out in that order
  std::unordered_set<core::PeerId> peers_hashed_;  // the same, for the look-up every message makes
  void remember_peer(core::PeerId peer) {
    if (peers_hashed_.insert(peer).second) peers_.insert(peer);
  }
};

}  // namespace bouquet::sim

// The offloading baseline: one GPU that holds none of the model and streams every block's weights
// from host RAM over PCIe for every step, computing each block as soon as it has arrived while the
// next one streams in (two block buffers). The PCIe link is the host's disk in SimGrid, so reads
// are charged bytes over its bandwidth; computations come from the same cost model as servers.
// Embeddings and LM head stay resident on the GPU.
#pragma once

#include "sim/node_loop.h"
#include "sim/sim_context.h"

namespace bouquet::sim {

class OffloadNode final : public NodeLoop {
 public:
  OffloadNode(SimContext& context, const ClientConfig& config, const std::string& host, size_t result_index);

 protected:
  void on_start() override;
  void on_message(core::PeerId, core::Message&) override {}
  void on_timer(uint32_t, uint64_t) override {}
  bool finished() const override { return done_; }

 public:
  void close_books() override;

 private:
  ClientResult& result();
  // One pass over every block for `work`, then `then`.
  void pass(BlockWork work, std::function<void()> then);
  void read_next();
  void compute_next();
  void next_step();

  SimContext& context_;
  const ClientConfig& config_;
  const DeviceSpec& gpu_;
  size_t result_index_;
  bool done_ = false;

  // The pass in progress.
  BlockWork work_;
  std::function<void()> then_;
  int64_t read_ = 0;      // blocks whose weights arrived
  int64_t reading_ = 0;   // blocks whose read started
  int64_t computed_ = 0;  // blocks computed
  bool computing_ = false;

  int64_t steps_left_ = 0;
  int64_t position_ = 0;
  int64_t runs_left_ = 0;
  double measure_from_ = 0;
};

}  // namespace bouquet::sim

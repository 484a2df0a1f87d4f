// A simulated client and its work. Generation drives the core's InferenceSession: the driver
// answers its PlanRoute with the modelled directory and the core's planner named by the scenario
// (greedy, or min-latency over round trips the driver measures as ideal pings), charges the
// client's embeddings and LM head to its processor between steps, and feeds each next step. Every
// decision (route, step order, failure handling) is the core's.
//
// Forward and backward passes have no client component in the core yet: the driver splits the
// batch as the core's split_batch() says, and sends each sub-batch's ForwardRequest /
// BackwardRequest along its own chain from the core's throughput planner, hop after hop, all
// sub-batches at once, each with a reply deadline; it decides nothing else.
#pragma once

#include "core/inference_session.h"
#include "core/rtt_estimator.h"
#include "core/server_speeds.h"
#include "sim/node_loop.h"
#include "sim/sim_context.h"

#include <memory>
#include <optional>

namespace bouquet::sim {

class ClientNode final : public NodeLoop {
 public:
  // Reports into context.result.clients[result_index].
  ClientNode(SimContext& context, const ClientConfig& config, const std::string& host,
             size_t result_index);

 protected:
  void on_start() override;
  void on_message(core::PeerId from, core::Message& message) override;
  void on_timer(uint32_t component, uint64_t timer) override;
  void on_reset(core::PeerId from) override;
  bool finished() const override { return done_; }

 public:
  void close_books() override;

 private:
  // repeat: 0: sessions or passes one after another until the run ends.
  bool continuous() const { return config_.work.repeat == 0; }
  bool from_scratch() const { return context_.scenario.policies.recovery == "restart_from_scratch"; }
  void start_measure();
  void stop_measure();
  ClientResult& result();
  void finish(std::string error);

  // Generation through the core's InferenceSession.
  void open_session();
  void feed(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects);
  void plan_route(const core::PlanRoute& plan);
  void count_recoveries();
  void measure_rtts(const std::vector<core::ServerRecord>& records);
  void request_step(uint32_t tokens);
  void on_step_done();

  // Forward/backward passes: sub-batches (core::split_batch) each hop by hop along its own chain,
  // all at once.
  struct SubPass {
    uint32_t batch = 0;
    core::Chain chain;  // empty once done
    size_t hop = 0;
    bool backward = false;
    uint64_t request_id = 0;  // of the request awaited, also its timer id
  };
  void begin_passes();
  void refresh_records();
  void start_pass();
  void send_pass(size_t index, size_t hop);
  SubPass* awaiting(core::PeerId from, uint64_t request_id);
  void on_pass_reply(core::PeerId from, const core::Message& message);

  core::Activation hidden(uint32_t batch, uint32_t tokens) const;
  double client_compute_s(int64_t input_tokens, int64_t logit_rows) const;

  SimContext& context_;
  const ClientConfig& config_;
  const DeviceSpec& device_;
  size_t result_index_;
  core::Rng rng_;
  core::RttEstimator rtt_;
  core::ServerSpeeds speeds_{rtt_};  // what this client's steps measured of each server
  bool done_ = false;

  std::unique_ptr<core::InferenceSession> session_;
  uint32_t session_index_ = 0;  // timers of an old session never reach a new one
  int64_t steps_left_ = 0;
  int64_t sessions_done_ = 0;
  std::optional<double> measuring_since_;
  std::optional<double> step_started_s_;  // a single-token step in flight, for its latency
  int64_t attempt_steps_ = 0;             // steps the current session completed
  int64_t attempt_positions_ = 0;         // positions they processed
  bool attempt_ready_ = false;            // the current session opened

  std::vector<core::ServerRecord> records_;  // the swarm as the passes' latest lookup saw it
  double records_read_s_ = -1;               // when that lookup left
  bool reread_for_pass_ = false;             // the pass being planned already re-read it
  std::vector<SubPass> sub_passes_;
  size_t sub_passes_left_ = 0;
  int64_t passes_left_ = 0;
};

}  // namespace bouquet::sim

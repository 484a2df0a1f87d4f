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
#include "core/pass_session.h"
#include "core/rtt_estimator.h"
#include "core/server_speeds.h"
#include "sim/node_loop.h"
#include "sim/sim_context.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

namespace bouquet::sim {

class ClientNode final : public NodeLoop {
 public:
  // Reports into context.result.clients[result_index].
  ClientNode(SimContext& context, const ClientConfig& config, const std::string& host, size_t result_index);

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
  void start_measure();
  void stop_measure();
  ClientResult& result();
  void finish(std::string error);

  // Generation through the core's InferenceSession.
  void open_session();
  void feed(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects);
  void plan_route(const core::PlanRoute& plan);
  core::Result<core::Chain> plan_on_known(const core::PlanRoute& plan);
  // Reads the directory unless a read is in flight; `then` (if any) runs once an answer is known.
  void read_directory(std::function<void()> then);
  void count_recoveries();
  // The first session's chain and recoveries, by server name (ClientResult::routes).
  std::vector<NamedHop> named(const core::Chain& chain) const;
  void measure_rtts(const std::vector<core::ServerRecord>& records);
  void request_step(uint32_t tokens);
  void on_step_done();

  // Forward/backward passes through the core's PassSession.
  void begin_passes();
  void refresh_records();
  void start_pass();
  void feed_pass(const core::Input& input);
  void plan_pass_route(const core::PlanRoute& plan);
  void note_pass_route(const core::RoutePlanned& planned);
  void on_pass_done();

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
  int64_t attempt_steps_ = 0;             // steps the current attempt completed
  // Attempts of this generation (restart_from_scratch starts new ones within a session): client
  // work scheduled for an earlier attempt is dropped.
  uint64_t attempt_ = 0;

  std::unordered_map<core::PeerId, std::string> names_;  // servers' hosts, from the records seen
  // Generation's view of the swarm: the latest directory answer, a read in flight, and a plan that
  // waits for it (core::waits_for_directory).
  std::vector<core::ServerRecord> known_;
  bool reading_ = false;
  std::function<void()> waiting_plan_;
  std::vector<core::ServerRecord> records_;  // the swarm as the passes' latest lookup saw it
  double records_read_s_ = -1;               // when that lookup left
  std::unique_ptr<core::PassSession> pass_;
  int64_t passes_left_ = 0;
};

}  // namespace bouquet::sim

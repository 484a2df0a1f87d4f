// An inference session through a chain of remote servers: the Asio driver of one
// core::InferenceSession, with a synchronous face for the generation loop.
//
// The core decides everything (route request, opens, hop order, history, deadlines, failure);
// this driver carries out its effects on a SwarmClient — messages, timers, and PlanRoute answered
// with the core's planner over the servers' InfoReplies: greedy for peers given by hand,
// min-latency (pinged RTTs, announced speeds) when the client has a directory, whose fresh
// records re-plans then read — and waits for its reports.
//
// Promises:
// - open() returns once every hop's server opened its session, or throws RemoteError naming the
//   server and span (or, when no chain covers the model, the blocks nobody serves and why each
//   peer was unusable: unreachable, another model's fingerprint).
// - step(hidden) runs [batch, tokens, hidden] through every hop and returns the last span's
//   output for those positions (float32, CPU). The core splits steps longer than
//   max_step_tokens() (what fits in one frame) into several messages. A rewind (start_position
//   below length()) is passed on.
// - A failed hop is the core's to handle (recovery.h: under `replay` it is replaced from the
//   same peer list and its history replayed); what cannot be recovered throws RemoteError and
//   leaves the session failed. Every wait ends by the core's deadlines (reply, cache wait,
//   recovery deadline).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/inference_session.h"
#include "core/planners.h"
#include "gpu/chat.h"
#include "gpu/generation.h"
#include "net/client/swarm_client.h"

namespace bouquet::net {

struct RemoteSessionConfig {
  uint64_t session_id = 0;  // high bit clear (SwarmClient request ids use it)
  std::string model_id;     // the model fingerprint
  uint32_t num_blocks = 0;
  uint32_t hidden_size = 0;
  uint32_t max_length = 0;
  uint32_t batch = 1;
  core::Compression compression = core::Compression::none;
  double cache_wait_timeout_s = 30;
  double reply_timeout_s = 30;
  core::RecoveryPolicy recovery = core::RecoveryPolicy::replay;
  double recovery_deadline_s = 60;
  std::string adapter = {};  // LoRA adapter the servers apply ("" = none); routing keeps to its holders
  // The planner (core/planners.h). Peers given by hand keep the order-respecting greedy one people
  // and tests rely on; `generate` routes a swarm found through the DHT by min latency.
  core::Routing routing = core::Routing::greedy;
  double spot_check_rate = 0;  // core/spot_check.h
};

// One hop of the route, for people: which server runs which blocks.
struct RouteHop {
  std::string address;
  core::BlockSpan span;
};

// Thrown by step() under restart_from_scratch (core/recovery.h): a server failed, everything the
// session processed is lost, and the session is open again on a fresh chain with length 0. The
// caller generates again from its first step.
class GenerationRestarted : public gpu::GenerationRestart {
 public:
  explicit GenerationRestarted(uint32_t positions_lost)
      : gpu::GenerationRestart("a server failed: the generation restarts from scratch"),
        positions_lost(positions_lost) {}
  uint32_t positions_lost;
};

class RemoteInferenceSession {
 public:
  RemoteInferenceSession(SwarmClient& client, RemoteSessionConfig config);
  ~RemoteInferenceSession();  // closes the session if it is open
  RemoteInferenceSession(const RemoteInferenceSession&) = delete;
  RemoteInferenceSession& operator=(const RemoteInferenceSession&) = delete;

  void open();
  at::Tensor step(const at::Tensor& hidden, std::optional<uint32_t> start_position = std::nullopt);
  void close();
  // Hands the core whatever arrived while nobody waited (a server that closed the session for
  // idling, a lost connection) without blocking, so the next step recovers from what is true now.
  void poll();

  uint32_t length() const { return session_.length(); }
  const core::Chain& chain() const { return session_.chain(); }
  std::vector<RouteHop> route() const;
  uint32_t max_step_tokens() const;
  const core::InferenceSession& core_session() const { return session_; }
  const std::vector<core::Recovery>& recoveries() const { return session_.recoveries(); }
  const std::vector<core::SpotCheck>& spot_checks() const { return session_.spot_checks(); }

 private:
  void feed(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects);
  void wait(const char* what);
  [[noreturn]] void report_restart();
  [[noreturn]] void throw_failure();
  std::string routing_problems() const;

  SwarmClient& client_;
  RemoteSessionConfig config_;
  core::InferenceSession session_;
  core::Rng rng_;  // draws of a planner that draws (throughput), seeded by the session id
  TimerTable timers_;
  size_t listener_ = 0;
  // Reports of the core session, consumed by the synchronous calls.
  bool ready_ = false;
  bool closed_ = false;
  std::optional<core::Error> failure_;
  std::optional<core::Activation> output_;
  std::optional<uint32_t> restarted_;  // SessionRestarted not yet reported to the caller: positions lost
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The generation loop's steps (gpu::run_generation) through a swarm session, which a chat keeps
// open across turns: truncate() first hands the session what arrived while nobody waited (poll),
// then makes the next step start at that position (a rewind drops what follows).
class RemoteSteps final : public gpu::ChatSteps {
 public:
  explicit RemoteSteps(RemoteInferenceSession& session) : session_(session) {}
  at::Tensor step(const at::Tensor& hidden) override;
  void truncate(int64_t length) override;

 private:
  RemoteInferenceSession& session_;
  std::optional<uint32_t> start_;  // the next step's start position, when truncate() set one
};

}  // namespace bouquet::net

// The client's side of fine-tuning passes through the swarm: every block of the model, run span
// by span on servers, as a gpu::PassChain the prompt tuner trains through. The Asio driver of one
// core::PassSession (core/pass_session.h), which decides everything: sub-batches, routes (by
// throughput), what a failed hop costs (a ban, a re-planned span, a forward recomputed for a
// backward), when to give up.
//
// Promises (beyond the core's):
// - forward() and backward() return when the core reports the pass done, or throw RemoteError
//   (servers named by address) when it fails; gpu::InputError for deep prompts of a wrong shape.
// - Sub-batches are at most max_tokens_per_request positions, and at most what any server this
//   client knows announces it takes in one request (InfoReply::request_tokens_max): split rather
//   than be refused. A single sequence longer than a server's cap is refused (over_limit).
// - A re-plan with a DHT directory first asks it who is there now.
// - Single-threaded, like the SwarmClient it drives.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/compression.h"
#include "core/pass_session.h"
#include "core/rng.h"
#include "gpu/prompt_tuning.h"
#include "net/client/remote_generation.h"
#include "net/client/swarm_client.h"
#include "net/rpc/timers.h"

namespace bouquet::net {

struct RemoteChainConfig {
  std::string model_id;  // the model fingerprint
  uint32_t num_blocks = 0;
  core::Compression compression = core::Compression::none;
  double timeout_s = 60;
  uint32_t max_tokens_per_request = core::kSubBatchTokensMax;
  int max_retries = 4;         // failed hops per forward or backward
  uint64_t seed = 0;           // routing draws (and spot check draws)
  double spot_check_rate = 0;  // fraction of hop forwards re-run on another server (core/spot_check.h)
};

// A hop that failed and what took its span over, servers by address.
struct PassRetry {
  core::BlockSpan span;
  std::string failed_peer;
  std::string cause;
  std::vector<std::string> replacement;
};

class RemoteChain final : public gpu::PassChain {
 public:
  RemoteChain(SwarmClient& client, RemoteChainConfig config);
  ~RemoteChain() override;
  RemoteChain(const RemoteChain&) = delete;
  RemoteChain& operator=(const RemoteChain&) = delete;

  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& prompts) override;
  gpu::SpanRunner::Gradients backward(const at::Tensor& grad_outputs) override;

  // The chain of each sub-batch of the last pass.
  std::vector<core::Chain> chains() const { return session_ ? session_->chains() : std::vector<core::Chain>{}; }
  std::vector<PassRetry> retries() const;
  // Requests sent so far (sub-batches count one each), for tests and reports.
  uint64_t requests_sent() const { return session_ ? session_->requests_sent() : 0; }
  // Every spot check so far (core/spot_check.h), servers named by address.
  std::vector<SpotCheckReport> spot_checks() const;
  // Servers that failed the identity challenge (core/identity_proof.h), at discovery or at a
  // forward or backward, by address, sorted.
  std::vector<std::string> impostors() const;
  // "A:port [0, 3) -> B:port [3, 6)", one line per distinct chain of the last pass.
  std::string describe_chain() const;

 private:
  void feed(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects);
  void wait(const char* what);
  [[noreturn]] void throw_failure() const;
  uint32_t request_tokens_max() const;

  SwarmClient& client_;
  RemoteChainConfig config_;
  core::Rng rng_;
  std::optional<core::PassSession> session_;  // made by the first forward, which gives the hidden size
  TimerTable timers_;
  size_t listener_ = 0;
  // Reports of the core session, consumed by the synchronous calls.
  std::optional<core::Activation> forward_done_;
  std::optional<core::BackwardDone> backward_done_;
  std::optional<core::Error> failure_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bouquet::net

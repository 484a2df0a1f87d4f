// The client's side of a fine-tuning pass through the swarm (issue 11): every block of the model,
// run span by span on servers, as a gpu::PassChain the prompt tuner trains through.
//
// Promises:
// - forward() plans a chain over all blocks by throughput (core/throughput_route.h) on its first
//   call, sends the hidden states hop by hop and keeps each hop's inputs; backward() walks the
//   hops in reverse and sends each one its inputs again, the gradient of its outputs and its
//   slice of the deep prompts (servers keep nothing between the two calls), and returns the
//   gradients w.r.t. the first hop's inputs and all the deep prompts.
// - A pass of more positions than max_tokens_per_request, or than the hop's server announces it
//   takes in one request (InfoReply::request_tokens_max), goes out as sub-batches of whole
//   sequences (core/sub_batches.h), all sent to the hop at once, concurrently. A single sequence
//   longer than the server's cap is refused (over_limit) and ends the pass with RemoteError.
// - A hop that fails (error reply other than bad_request, lost connection, timeout) gets its
//   server banned (core/ban_list.h) and exactly its span re-planned (core/pass_route.h); the pass
//   goes on from that hop. A hop backward needs inputs for (a replacement split into several
//   hops) is recomputed forward from the span's saved inputs first. After max_retries failures
//   in one pass, or no server left for a span, or a bad_request reply: RemoteError naming the
//   server (or block) and the cause.
// - Single-threaded, like the SwarmClient it drives.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "core/ban_list.h"
#include "core/compression.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/sub_batches.h"
#include "gpu/prompt_tuning.h"
#include "net/client/swarm_client.h"

namespace bouquet::net {

struct RemoteChainConfig {
  std::string model_id;  // the model fingerprint
  uint32_t num_blocks = 0;
  core::Compression compression = core::Compression::none;
  double timeout_s = 60;
  uint32_t max_tokens_per_request = core::kSubBatchTokensMax;
  int max_retries = 4;  // per pass
  uint64_t seed = 0;    // routing draws
};

// A hop that failed and what took its span over.
struct PassRetry {
  core::BlockSpan span;
  std::string failed_peer;
  std::string cause;
  std::vector<std::string> replacement;  // addresses
};

class RemoteChain final : public gpu::PassChain {
 public:
  RemoteChain(SwarmClient& client, RemoteChainConfig config);

  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& prompts) override;
  gpu::SpanRunner::Gradients backward(const at::Tensor& grad_outputs) override;

  const core::Chain& chain() const { return chain_; }
  const std::vector<PassRetry>& retries() const { return retries_; }
  // Requests sent so far (sub-batches count one each), for tests and reports.
  uint64_t requests_sent() const { return requests_sent_; }
  std::string describe_chain() const;

 private:
  struct Call;
  // Runs one hop for every sub-batch at once; throws HopFailed for a retryable failure.
  at::Tensor run_hop(const core::Hop& hop, const at::Tensor& inputs, const at::Tensor* grad_outputs,
                     const at::Tensor& prompts, at::Tensor* grad_prompts);
  void plan();
  // Bans the hop's server and splices a re-planned span in place of chain_[index].
  void replace_hop(size_t index, const std::string& cause);
  at::Tensor hop_prompts(const core::Hop& hop) const;
  // The most positions one request to `peer` may carry (0 = no split).
  uint32_t request_tokens_max(core::PeerId peer) const;

  SwarmClient& client_;
  RemoteChainConfig config_;
  core::Rng rng_;
  core::BanList bans_;
  core::Chain chain_;
  std::vector<PassRetry> retries_;
  uint64_t requests_sent_ = 0;
  uint64_t next_request_ = 1;
  int failures_this_pass_ = 0;
  // The last forward: the inputs of each hop, keyed by the hop's first block, and the prompts.
  std::map<uint32_t, at::Tensor> inputs_;
  at::Tensor prompts_;
};

}  // namespace bouquet::net

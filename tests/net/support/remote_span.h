// Test helper: stateless calls through one chosen server, forward (a span's outputs for some
// hidden states) and backward (the gradient with respect to those inputs, given the gradient of
// the outputs), for tests that hold one server's answers against local autograd. Clients go
// through net/client/remote_chain.h (the core's PassSession), which routes and recovers.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/block_span.h"
#include "core/compression.h"
#include "core/peer_id.h"
#include "net/client/swarm_client.h"

namespace bouquet::net {

struct RemoteSpanCall {
  core::PeerId peer;
  core::BlockSpan span;
  std::string model_id;                                     // the model fingerprint
  core::Compression compression = core::Compression::none;  // both ways
  double timeout_s = 60;
  std::string adapter = {};  // LoRA adapter the server applies ("" = none; unknown_adapter if it lacks it)
};

// [batch, tokens, hidden] -> the span's outputs (float32, CPU). Throws RemoteError naming the
// server on an error reply, a lost connection, a timeout or a reply of the wrong shape.
at::Tensor remote_forward(SwarmClient& client, const RemoteSpanCall& call, const at::Tensor& hidden);
// Gradient of the loss with respect to `hidden`, given its gradient with respect to the span's
// outputs (same shape). Same failures as remote_forward.
at::Tensor remote_backward(SwarmClient& client, const RemoteSpanCall& call, const at::Tensor& hidden,
                           const at::Tensor& grad_outputs);

}  // namespace bouquet::net

// The compute seam: what a server asks its driver to run, and what comes back. The server's
// state machine emits StartCompute(ComputeRequest); the driver runs the blocks (libtorch on a
// worker thread for real, a cost-model delay in SimGrid, a fake block in tests) and feeds back
// ComputeFinished with the same task id. The core never waits for a computation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/activation.h"
#include "core/block_span.h"
#include "core/error.h"

namespace bouquet::core {

using TaskId = uint64_t;
// Names one session's attention caches on a server. The driver allocates them on first use
// (batch x max_length positions per block of the span) and frees them on DropCache.
using CacheId = uint64_t;

// Wire-stable values (a cost model or a log may record them).
enum class ComputeKind : uint8_t { inference = 0, forward = 1, backward = 2 };
std::string_view to_string(ComputeKind kind);

struct ComputeRequest {
  TaskId task_id = 0;
  ComputeKind kind = ComputeKind::inference;
  BlockSpan span;
  uint32_t batch = 0;
  uint32_t new_tokens = 0;
  // Inference: positions already in the cache that the new tokens attend to. The driver first
  // truncates the cache to this length (a client may rewind), then appends the new positions.
  // 0 for forward/backward.
  uint32_t cache_length = 0;
  CacheId cache_id = 0;                    // inference only
  uint32_t max_length = 0;                 // inference only: the cache's capacity in positions
  std::string adapter;                     // "" for none
  Activation inputs;                       // [batch, new_tokens, hidden]
  std::optional<Activation> grad_outputs;  // backward only: [batch, new_tokens, hidden]
  std::optional<Activation> prompts;       // deep prompts, when the request had them
  // The compression the outputs will travel with; the driver sets it on the output handles.
  Compression output_compression = Compression::none;
};

struct ComputeOutput {
  // Inference/forward: the span's outputs; backward: gradient wrt the inputs. Same shape as inputs.
  Activation outputs;
  std::optional<Activation> grad_prompts;  // backward with prompts only
};

}  // namespace bouquet::core

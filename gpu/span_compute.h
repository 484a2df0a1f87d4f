// The real compute seam of a server: carries out the core's ComputeRequests (inference steps
// against per-session KV caches, stateless forward, backward) with the libtorch engine.
//
// Promises:
// - Loads only the blocks of its span from the checkpoint, each as its own gpu::SpanRunner, so a
//   request for any contiguous sub-span (a client's chain may start or end inside a server's
//   span) runs exactly those blocks, and a session's caches exist only on the blocks it uses.
// - Inference honours ComputeRequest::cache_length: caches are truncated there, then the new
//   positions appended (a rewind replays from that point). A cache is created on its first step.
// - Expected failures come back as typed errors, never exceptions: bad input the engine rejects
//   (gpu::InputError) as bad_request, a cache shorter than the step's start as bad_position,
//   anything else the engine throws as compute_failed. After a failure the caches still hold
//   every position before the failed step's start.
// - Deep prompts ([blocks of the request's span, batch or 1, prefix, hidden]) go to the runners,
//   block by block, for inference, forward and backward; backward then also returns their gradient
//   (grad_prompts). A prompts tensor of the wrong shape is a bad_request naming the shape.
// - LoRA adapters (config.adapters, PEFT folders; name = folder name) are loaded for the span's
//   blocks next to the shared base weights; a request's `adapter` picks one ("" = none) for its
//   session's every step, or for one forward/backward. A name not loaded is unknown_adapter.
// - Outputs are float32 CPU tensors wrapped for the wire with the request's output_compression.
// - On a GPU, weights and caches stay on the device: an inference step's hidden states cross to the
//   device once on the way in and once on the way out (pinned host buffers, gpu/tensor_bridge.h),
//   and every call computes on this SpanCompute's own CUDA stream. A step that runs out of GPU
//   memory fails alone (compute_failed naming it); its session's caches are dropped and the
//   allocator's unused memory handed back, so the other sessions go on.
// - Not thread-safe: one worker thread drives it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/block_span.h"
#include "core/compute.h"
#include "core/error.h"

namespace bouquet::gpu {
class ComputeStream;
class SpanRunner;
struct ModelConfig;
}  // namespace bouquet::gpu

namespace bouquet::net {

struct SpanComputeConfig {
  std::filesystem::path model_dir;
  core::BlockSpan span;
  std::string dtype = "f32";
  std::string device = "cpu";
  std::string quant = "none";
  std::vector<std::filesystem::path> adapters = {};  // LoRA adapter folders
  bool show_progress = false;                        // loading shows progress on stderr (gpu/progress.h)
};

class SpanCompute {
 public:
  // Throws gpu::ModelFileError / gpu::InputError when the folder or span is unusable.
  explicit SpanCompute(const SpanComputeConfig& config);
  ~SpanCompute();
  SpanCompute(const SpanCompute&) = delete;
  SpanCompute& operator=(const SpanCompute&) = delete;

  core::BlockSpan span() const { return span_; }
  const gpu::ModelConfig& model_config() const;
  uint32_t hidden_size() const;
  uint64_t weight_bytes() const;
  uint64_t cache_bytes_per_token() const;          // keys and values of one token on every block
  std::string describe_compute() const;            // "cpu f32"
  std::vector<std::string> adapter_names() const;  // the loaded adapters' names, sorted
  // Free memory of the GPU the span computes on (after its weights are loaded); nullopt on a CPU.
  std::optional<uint64_t> device_free_bytes() const;

  core::Result<core::ComputeOutput> run(const core::ComputeRequest& request);
  // Inference steps of different sessions on the same blocks and adapter (what the core's
  // StartBatch holds) in one pass over the weights. Results in the requests' order, each as run()
  // would give it alone (within floating-point rounding); a request that fails its checks fails
  // alone and the others still run. Should the merged computation itself fail, every request
  // is run again alone from its own cache_length, so one session cannot fail the others.
  std::vector<core::Result<core::ComputeOutput>> run_batch(const std::vector<core::ComputeRequest>& requests);
  void drop_cache(core::CacheId cache);
  size_t open_caches() const;

 private:
  core::Result<core::ComputeOutput> run_inference(const core::ComputeRequest& request);
  // Opens the session's caches where needed, checks its start and truncates there (inference).
  std::optional<core::Error> prepare_inference(const core::ComputeRequest& request);
  core::Result<core::ComputeOutput> run_forward(const core::ComputeRequest& request);
  core::Result<core::ComputeOutput> run_backward(const core::ComputeRequest& request);
  std::vector<gpu::SpanRunner*> runners(core::BlockSpan span) const;

  core::BlockSpan span_;
  std::vector<std::unique_ptr<gpu::SpanRunner>> blocks_;  // blocks_[i] runs block span_.begin + i
  std::unique_ptr<gpu::ComputeStream> stream_;
};

}  // namespace bouquet::net

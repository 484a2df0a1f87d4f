// `bouquet bench-block`: how far one decode step of a single Llama block is from the memory floor.
// A decode step reads every weight once, so it cannot beat streaming the block's weight bytes from
// memory; the benchmark times both in the same run (same process, threads and machine state) and
// reports their ratio. Steps and probes alternate so that a shared machine's load weighs on both.
// Torch-free header: the command line includes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bouquet::gpu {

struct BenchBlockConfig {
  int64_t hidden = 4096;  // Llama-2-7B's block shape by default
  int64_t heads = 32;
  int64_t kv_heads = 0;  // 0: same as heads
  int64_t intermediate = 11008;
  int64_t cached_tokens = 128;  // keys/values already in the cache for each decode step
  int64_t steps = 10;
  // Blocks in a chain, each with its own weights and cache (a server's span): a step runs them
  // all, and the floor streams all their bytes. On a GPU, several blocks keep launch overheads
  // of one block from hiding how close a span's step comes to the memory's read speed.
  int64_t blocks = 1;
  int threads = 0;  // 0: libtorch's default
  std::string dtype = "f32";
  std::string quant = "none";    // none | int8 | nf4 | nf4-nodq: how the block's weights are held
  std::string kernels = "best";  // best | libtorch | portable | avx2 | avx512 (gpu/linear.h)
  std::string device = "auto";
  uint64_t seed = 0;
  // Also time batched decode steps (Block::forward_batch) of this many sessions, each with its
  // own cache of cached_tokens positions: what continuous batching costs per step. Empty: skip.
  std::vector<int64_t> batches;
};

// One batched decode step of `sessions` sessions.
struct BenchBatchRow {
  int64_t sessions = 0;
  double step_s = 0;       // median
  double per_token_s = 0;  // step_s / sessions
};

struct BenchBlockResult {
  uint64_t weight_bytes = 0;  // of every block together
  int threads = 0;
  std::string compute;      // "cpu f32", "cpu f32 int8"
  std::string kernels;      // what applied the weights: "avx512", ..., or "libtorch"
  std::string device_name;  // the GPU's name and memory; "" on a CPU
  double step_s = 0.0;      // median decode step
  double step_min_s = 0.0;
  double stream_s = 0.0;  // median time to stream weight_bytes once
  double stream_min_s = 0.0;
  double stream_gbps = 0.0;  // from the median
  double ratio = 0.0;        // step_s / stream_s
  // Best over best: on a shared machine the fastest runs are the least disturbed ones.
  double best_ratio = 0.0;
  // The same block's weights in f32 (the norms included), and the floor they set: quantized or
  // bf16 weights go below it. Equal to the above for f32 weights.
  uint64_t f32_weight_bytes = 0;
  double f32_stream_s = 0.0;           // median
  double f32_ratio = 0.0;              // step_s / f32_stream_s
  double f32_best_ratio = 0.0;         // step_min_s / fastest f32 stream
  std::vector<BenchBatchRow> batches;  // config.batches, in order
};

BenchBlockResult bench_block(const BenchBlockConfig& config);
std::string format_bench_block(const BenchBlockConfig& config, const BenchBlockResult& result);

}  // namespace bouquet::gpu

// `bouquet bench-block`: how far one decode step of a single Llama block is from the memory floor.
// A decode step reads every weight once, so it cannot beat streaming the block's weight bytes from
// memory; the benchmark times both in the same run (same process, threads and machine state) and
// reports their ratio. Torch-free header: the command line includes it.
#pragma once

#include <cstdint>
#include <string>

namespace bouquet::gpu {

struct BenchBlockConfig {
  int64_t hidden = 4096;  // Llama-2-7B's block shape by default
  int64_t heads = 32;
  int64_t kv_heads = 0;  // 0: same as heads
  int64_t intermediate = 11008;
  int64_t cached_tokens = 128;  // keys/values already in the cache for each decode step
  int64_t steps = 10;
  int threads = 0;  // 0: libtorch's default
  std::string dtype = "f32";
  std::string device = "auto";
  uint64_t seed = 0;
};

struct BenchBlockResult {
  uint64_t weight_bytes = 0;
  int threads = 0;
  std::string compute;  // "cpu f32"
  double step_s = 0.0;  // median decode step
  double step_min_s = 0.0;
  double stream_s = 0.0;  // median time to stream weight_bytes once
  double stream_min_s = 0.0;
  double stream_gbps = 0.0;  // from the median
  double ratio = 0.0;  // step_s / stream_s
  // Best over best: on a shared machine the fastest runs are the least disturbed ones.
  double best_ratio = 0.0;
};

BenchBlockResult bench_block(const BenchBlockConfig& config);
std::string format_bench_block(const BenchBlockConfig& config, const BenchBlockResult& result);

}  // namespace bouquet::gpu

// A server's compute speed, measured once on its real blocks and cached on disk.
//
// Two numbers, per block:
//   inference_rps: one-token cached steps per second (what min-latency routing prices a block at)
//   forward_rps:   tokens per second of a batched forward (what announced throughput starts from,
//                  core/throughput.h)
// They are measured on one block of the model with the engine the server serves with (device,
// dtype, quant, threads), for about `budget_s` in all, so a start stays short on a tiny model.
//
// Promises: a measurement is cached in <cache dir>/throughput.json under a key naming the model
// fingerprint, device, dtype, quant and threads, and a later start with the same key reads it
// instead of measuring. The cache dir is $BOUQUET_CACHE_DIR, else $HOME/.cache/bouquet. The file
// is replaced atomically (several servers may start at once); an unreadable or malformed cache is
// ignored with one log line and never fails a start.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace bouquet::net {

class SpanCompute;

struct ThroughputKey {
  std::string fingerprint;
  std::string device;
  std::string dtype;
  std::string quant;
  int threads = 0;
  std::string to_string() const;  // "fingerprint/device/dtype/quant/threads"
};

struct MeasuredSpeed {
  double inference_rps = 0;  // per block
  double forward_rps = 0;    // per block
  std::string source;        // "measured in 0.6 s", "cached in FILE"
};

// <$BOUQUET_CACHE_DIR or $HOME/.cache/bouquet>/throughput.json ("" when neither is set).
std::filesystem::path throughput_cache_file();

// Runs the first block of `compute` for one-token steps and a batched forward (`forward_tokens`
// positions), about budget_s in all. Leaves no cache behind in `compute`.
MeasuredSpeed measure_block_speed(SpanCompute& compute, double budget_s = 0.6, uint32_t forward_tokens = 128);

// The cached speed for `key`, or a fresh measurement (then cached). `log` gets one line on a
// cache problem.
MeasuredSpeed cached_block_speed(const ThroughputKey& key, SpanCompute& compute,
                                 const std::function<void(const std::string&)>& log);

}  // namespace bouquet::net

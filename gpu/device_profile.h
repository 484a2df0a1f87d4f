// `bouquet profile-device`: what the simulator needs to model this machine as a server, measured
// on a real model's block. The result is a JSON file the simulator reads as a device
// (`device_file:` in a scenario; sim/devices.h reads it).
//
// Measured, per weight format (f32, bf16, int8 as the server holds them):
// - decode: one new position per sequence, at each batch x cache length of the grid;
// - prefill: `tokens` new positions of one sequence, from an empty cache;
// each the median of repeated steps, with no request around them. Decode steps go through blocks
// 0, 1, ... in turn, enough of them (up to 16) that their weights outgrow the caches as a server's
// span does; prefill, bound by arithmetic, runs block 0 alone.
// Also: memory read bandwidth (summing a buffer, the same threads), and the per-request overhead:
// the fixed part a of a least-squares fit t = a + b x blocks over spans of 2, 3 and 4 blocks run
// through SpanCompute, what a server's worker runs for each request (handle in, caches, handle out),
// and the per-block overhead: that fit's b minus the same step of the same blocks alone.
// Torch-free header: the command line includes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace bouquet::gpu {

inline constexpr int64_t kDeviceProfileVersion = 1;

struct DeviceProfileConfig {
  std::filesystem::path model;
  std::filesystem::path out;
  std::vector<std::string> formats = {"f32", "bf16", "int8"};
  std::vector<int64_t> batches = {1, 4, 16};
  // Within the 256 positions of make-tiny-model's models; a longer model can take longer ones.
  std::vector<int64_t> cache_tokens = {0, 64, 192};
  std::vector<int64_t> prefill_tokens = {16, 64, 128};
  double seconds_per_point = 0.3;  // each figure: repeat for at least this long (3 steps at least)
  int threads = 0;                 // 0: libtorch's default
};

// Measures and writes config.out; returns the JSON text written. Throws InputError naming the
// flag for a bad config, ModelFileError for an unusable model folder.
std::string profile_device(const DeviceProfileConfig& config);

}  // namespace bouquet::gpu

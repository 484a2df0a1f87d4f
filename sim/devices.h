// Datasheet figures of the processors the simulator knows: peak dense throughput per arithmetic
// type, memory bandwidth and memory size. These are the vendors' numbers, not measurements; what a
// real program reaches of them is the cost model's business (its efficiencies).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim {

struct DeviceSpec {
  std::string name;
  bool is_gpu = true;
  // Peak dense operations per second. f16 is what PyTorch's half-precision matmul gets (FP32
  // accumulation, which GeForce cards run at half the FP16-accumulate rate); int8 is the integer
  // tensor-core rate with int32 accumulation. CPUs without native half or int8 units list their
  // fp32 rate for those types: the values are converted before the arithmetic.
  double f32_flops = 0;
  double f16_flops = 0;
  double int8_ops = 0;
  double memory_bandwidth_bytes_per_s = 0;
  double memory_bytes = 0;
};

// The device called `name` (case-insensitive), or nullptr.
const DeviceSpec* find_device(std::string_view name);
std::vector<std::string> device_names();

}  // namespace bouquet::sim

// Datasheet figures of the processors the simulator knows: peak dense throughput per arithmetic
// type, memory bandwidth and memory size. These are the vendors' numbers, not measurements; what a
// real program reaches of them is the cost model's business (its efficiencies).
//
// A device file (`bouquet profile-device`'s JSON, gpu/device_profile.h) is a measured device
// instead: its block step times replace the roofline (cost_model.h says how they are used).
#pragma once

#include "sim/model_shapes.h"

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim {

// Block step times measured on one machine, for the block of the model it was profiled on.
struct MeasuredFormat {
  struct Decode {
    int64_t batch = 1;
    int64_t cache_tokens = 0;
    double step_s = 0;
  };
  struct Prefill {
    int64_t batch = 1;
    int64_t new_tokens = 2;
    double step_s = 0;
  };
  std::vector<Decode> decode;  // a full grid: every batch measured at every cache length
  std::vector<Prefill> prefill;
  // A fine-tuning backward request (forward recomputed with autograd, gradients to the inputs) of
  // batch x new_tokens positions; empty in files that predate it (the cost model then charges
  // twice the forward).
  std::vector<Prefill> backward;
};

struct MeasuredDevice {
  std::string file;
  ModelShape shape;  // of the block that was timed
  double read_bandwidth_bytes_per_s = 0;
  double request_overhead_s = 0;                  // per request a server runs
  double block_overhead_s = 0;                    // per block of a request, beyond the block's own step
  std::map<std::string, MeasuredFormat> formats;  // "f32", "bf16", "int8"
};

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
  std::shared_ptr<const MeasuredDevice> measured;  // set for a device file
};

// A device file that cannot be used: the message names the file and the key.
class DeviceFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int64_t kDeviceFileVersion = 1;

// Reads a device file. Its name is "file:PATH"; it is a CPU (is_gpu false) whose peak rate is
// what its largest f32 prefill reached and whose bandwidth is the measured read bandwidth (used
// where no measured figure applies: the client's own share). Throws DeviceFileError.
DeviceSpec read_device_file(const std::string& path);
// Reads it and makes it known to find_device() by that name (reading the same path again
// replaces it for later lookups; earlier pointers stay valid). Returns the name.
std::string register_device_file(const std::string& path);

// The device called `name` (case-insensitive; a registered device file by its exact name), or
// nullptr.
const DeviceSpec* find_device(std::string_view name);
std::vector<std::string> device_names();

}  // namespace bouquet::sim

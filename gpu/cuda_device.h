// What a server needs to know of a CUDA device, and the one-line errors when it cannot have one.
// Code that needs CUDA's own headers (free memory, streams) lives in cuda_device.cpp and compiles
// only where the found libtorch has CUDA (BOUQUET_HAS_CUDA, see cmake/Dependencies.cmake); on a
// CPU-only libtorch (Debian's) the same calls answer "no CUDA in this build" or do nothing.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace bouquet::gpu {

// Whether this build's libtorch was built with CUDA (a GPU need not be present).
bool cuda_built();

// The oldest compute capability this build computes on (CUDA 13's libtorch: 7.5, Turing).
inline constexpr int kMinComputeCapability = 75;

// Throws InputError, one line naming `asked` (the --device value) and what to do, when `device`
// (a CUDA device) cannot be used: this libtorch has no CUDA, no GPU is visible, the index is past
// the GPUs there are, or the GPU's compute capability is below kMinComputeCapability.
void check_cuda_device(const c10::Device& device, std::string_view asked);

struct DeviceMemory {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};

// Free and total memory of a CUDA device as the driver reports them (cudaMemGetInfo), after this
// process's cached, unused blocks are handed back. nullopt for a CPU device or a CPU-only build.
std::optional<DeviceMemory> device_memory(const c10::Device& device);

// "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.1 GB" for a CUDA device; "" otherwise.
std::string describe_device(const c10::Device& device);

// Whether `e` (thrown by libtorch) says the device ran out of memory.
bool is_out_of_memory(const std::exception& e);
// Hands the caching allocator's unused blocks back to the device, so that memory freed by a failed
// request (an out-of-memory session) serves the next one. No-op without CUDA.
void release_cached_memory();

// A CUDA stream of its own for the owner's computations: while a Use is alive, the thread's
// current stream on the device is this one (each call of the compute thread opens one). On a CPU
// device or a CPU-only build it holds nothing.
class ComputeStream {
 public:
  explicit ComputeStream(const c10::Device& device);
  ~ComputeStream();
  ComputeStream(const ComputeStream&) = delete;
  ComputeStream& operator=(const ComputeStream&) = delete;

  class Use {
   public:
    explicit Use(const ComputeStream& stream);
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    struct Guard;
    std::unique_ptr<Guard> guard_;
  };

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace bouquet::gpu

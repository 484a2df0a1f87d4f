#include "gpu/cuda_device.h"

#include "gpu/errors.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#ifdef BOUQUET_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace bouquet::gpu {

bool cuda_built() {
#ifdef BOUQUET_HAS_CUDA
  return true;
#else
  return false;
#endif
}

void check_cuda_device(const c10::Device& device, std::string_view asked) {
  if (!device.is_cuda()) return;
  if (!cuda_built()) {
    throw InputError(
        fmt::format("--device {}: this build's libtorch has no CUDA (Debian's libtorch is CPU-only); "
                    "build with BOUQUET_TORCH=pip scripts/setup.sh for GPUs, or use --device cpu",
                    asked));
  }
  const int64_t count = torch::cuda::device_count();
  if (count == 0 || !torch::cuda::is_available()) {
    throw InputError(
        fmt::format("--device {}: this libtorch has CUDA but sees no GPU (no device, or no NVIDIA driver); "
                    "use --device cpu",
                    asked));
  }
  const int64_t index = device.has_index() ? device.index() : 0;
  if (index >= count) {
    throw InputError(fmt::format("--device {}: there are {} GPU(s) here (cuda:0 to cuda:{})", asked, count, count - 1));
  }
#ifdef BOUQUET_HAS_CUDA
  const cudaDeviceProp* props = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index));
  if (props->major * 10 + props->minor < kMinComputeCapability) {
    throw InputError(fmt::format("--device {}: {} has compute capability {}.{}; this build needs {}.{} or newer", asked,
                                 props->name, props->major, props->minor, kMinComputeCapability / 10,
                                 kMinComputeCapability % 10));
  }
#endif
}

std::optional<DeviceMemory> device_memory(const c10::Device& device) {
#ifdef BOUQUET_HAS_CUDA
  if (!device.is_cuda()) return std::nullopt;
  const c10::cuda::CUDAGuard guard(device.has_index() ? device.index() : 0);
  c10::cuda::CUDACachingAllocator::emptyCache();
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error for the next call
    return std::nullopt;
  }
  return DeviceMemory{free_bytes, total_bytes};
#else
  return std::nullopt;
#endif
}

std::string describe_device(const c10::Device& device) {
#ifdef BOUQUET_HAS_CUDA
  if (!device.is_cuda()) return "";
  const cudaDeviceProp* props = at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0);
  return fmt::format("{}, compute capability {}.{}, {:.1f} GB", props->name, props->major, props->minor,
                     static_cast<double>(props->totalGlobalMem) / 1e9);
#else
  return "";
#endif
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  // Some paths (cuBLAS workspaces) report it as a plain c10::Error.
  const std::string_view what = e.what();
  return what.find("out of memory") != std::string_view::npos;
}

void release_cached_memory() {
#ifdef BOUQUET_HAS_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

#ifdef BOUQUET_HAS_CUDA
struct ComputeStream::State {
  c10::cuda::CUDAStream stream;
};
struct ComputeStream::Use::Guard {
  c10::cuda::CUDAStreamGuard guard;
};
#else
struct ComputeStream::State {};
struct ComputeStream::Use::Guard {};
#endif

ComputeStream::ComputeStream(const c10::Device& device) {
#ifdef BOUQUET_HAS_CUDA
  if (device.is_cuda()) {
    state_ = std::make_unique<State>(
        State{c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.has_index() ? device.index() : 0)});
  }
#endif
}

ComputeStream::~ComputeStream() = default;

ComputeStream::Use::Use(const ComputeStream& stream) {
#ifdef BOUQUET_HAS_CUDA
  if (stream.state_) guard_.reset(new Guard{c10::cuda::CUDAStreamGuard(stream.state_->stream)});
#endif
}

ComputeStream::Use::~Use() = default;

}  // namespace bouquet::gpu

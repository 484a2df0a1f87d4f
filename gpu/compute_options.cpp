#include "gpu/compute_options.h"

#include "gpu/cuda_device.h"
#include "gpu/errors.h"
#include "gpu/kernels/matvec.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

namespace bouquet::gpu {
namespace {

at::ScalarType parse_compute_dtype(std::string_view name) {
  if (name == "f32" || name == "float32") return at::kFloat;
  if (name == "f16" || name == "float16") return at::kHalf;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "f64" || name == "float64") return at::kDouble;  // slow; for checking numerics
  throw InputError(fmt::format("unknown compute dtype '{}' (expected f32, f16, bf16 or f64)", name));
}

WeightQuant parse_quant(std::string_view name) {
  if (name == "none" || name.empty()) return WeightQuant::none;
  if (name == "int8") return WeightQuant::int8;
  if (name == "nf4") return WeightQuant::nf4;
  if (name == "nf4-nodq") return WeightQuant::nf4_nodq;
  throw InputError(fmt::format("unknown weight quantization '{}' (expected none, int8, nf4 or nf4-nodq)", name));
}

c10::Device parse_device(std::string_view name) {
  if (name == "auto" || name.empty()) {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  try {
    const c10::Device device{std::string(name)};
    if (device.is_cpu() || device.is_cuda()) {
      check_cuda_device(device, name);
      return device;
    }
  } catch (const c10::Error&) {
  }
  throw InputError(fmt::format("unknown device '{}' (expected auto, cpu, cuda or cuda:N)", name));
}

// Runs the operations a block uses on a few numbers, so an unsupported combination fails here
// with one clear line instead of deep inside the first generation step.
void probe(const ComputeOptions& options) {
  try {
    const auto o = at::TensorOptions().device(options.device).dtype(options.dtype);
    const at::Tensor x = at::ones({1, 2, 8}, o);
    const at::Tensor w = at::ones({8, 8}, o);
    const at::Tensor y = at::linear(x, w);
    const at::Tensor s = at::softmax(at::matmul(y, y.transpose(1, 2)).to(at::kFloat), -1);
    (void)(at::silu(y) * y).sum().item<float>();
    (void)s.sum().item<float>();
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("compute dtype {} is not supported on {} by this libtorch ({}); use --dtype f32",
                                 short_dtype_name(options.dtype), options.device.str(), e.what_without_backtrace()));
  }
}

}  // namespace

ComputeOptions resolve_compute(std::string_view dtype, std::string_view device, std::string_view quant) {
  ComputeOptions options{parse_device(device), parse_compute_dtype(dtype), parse_quant(quant)};
  probe(options);
  return options;
}

LinearKernels parse_linear_kernels(std::string_view name) {
  const auto require = [&](kernels::Isa isa, LinearKernels choice) {
    if (!kernels::isa_supported(isa)) {
      throw InputError(
          fmt::format("linear kernels '{}' need an instruction set this CPU lacks "
                      "(it has {})",
                      name, kernels::isa_name(kernels::detected_isa())));
    }
    return choice;
  };
  if (name == "best" || name.empty()) return LinearKernels::best;
  if (name == "libtorch") return LinearKernels::libtorch;
  if (name == "portable") return LinearKernels::portable;
  if (name == "avx2") return require(kernels::Isa::avx2, LinearKernels::avx2);
  if (name == "avx512") return require(kernels::Isa::avx512, LinearKernels::avx512);
  throw InputError(
      fmt::format("unknown linear kernels '{}' (expected best, libtorch, portable, avx2 or avx512)", name));
}

std::string_view linear_kernels_name(LinearKernels choice) {
  switch (choice) {
    case LinearKernels::best:
      return "best";
    case LinearKernels::libtorch:
      return "libtorch";
    case LinearKernels::portable:
      return "portable";
    case LinearKernels::avx2:
      return "avx2";
    case LinearKernels::avx512:
      return "avx512";
  }
  return "unknown";
}

std::string_view short_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "f32";
    case at::kHalf:
      return "f16";
    case at::kBFloat16:
      return "bf16";
    case at::kDouble:
      return "f64";
    default:
      return "other";
  }
}

std::string describe(const ComputeOptions& options) {
  if (options.quant == WeightQuant::none) {
    return fmt::format("{} {}", options.device.str(), short_dtype_name(options.dtype));
  }
  return fmt::format("{} {} {}", options.device.str(), short_dtype_name(options.dtype), quant_name(options.quant));
}

std::string_view quant_name(WeightQuant quant) {
  switch (quant) {
    case WeightQuant::none:
      return "none";
    case WeightQuant::int8:
      return "int8";
    case WeightQuant::nf4:
      return "nf4";
    case WeightQuant::nf4_nodq:
      return "nf4-nodq";
  }
  return "unknown";
}

}  // namespace bouquet::gpu

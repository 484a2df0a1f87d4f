// Where and in which floating dtype blocks and heads compute. Weights are upcast or downcast to
// this dtype once, on load. f32 on the CPU is the default because libtorch 1.13's CPU kernels lack
// half-precision matrix products; CUDA is chosen at run time when this libtorch has it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <string_view>

namespace bouquet::gpu {

// How block weights are held: in the compute dtype, int8 with per-row f32 scales, or NF4
// (bitsandbytes' 4-bit format, core/nf4_layout.h) with its absmaxes double-quantized (nf4, ~4.127
// bits a weight) or in f32 (nf4_nodq, 4.5 bits). Weight-only: activations and accumulation stay in
// floating point; see gpu/linear.h.
enum class WeightQuant { none, int8, nf4, nf4_nodq };

// Which code applies weights to a few rows on the CPU (gpu/linear.h): the best this CPU has, or
// always libtorch's at::linear, or one instruction set (benchmarks and tests compare them).
enum class LinearKernels { best, libtorch, portable, avx2, avx512 };

struct ComputeOptions {
  c10::Device device = c10::Device(c10::kCPU);
  at::ScalarType dtype = at::kFloat;
  WeightQuant quant = WeightQuant::none;
  LinearKernels kernels = LinearKernels::best;
};

// `dtype`: f32 | f16 | bf16 | f64 (or float32, ...; f64 is for checking numerics); `device`: auto | cpu | cuda | cuda:N
// (auto = CUDA when available, else CPU). Runs a tiny probe of the kernels a block needs and
// throws InputError naming the dtype and device when this libtorch cannot compute in it there.
// `quant`: none | int8 | nf4 | nf4-nodq (InputError otherwise).
ComputeOptions resolve_compute(std::string_view dtype = "f32", std::string_view device = "auto",
                               std::string_view quant = "none");

// best | libtorch | portable | avx2 | avx512; InputError for another name or an instruction set
// this CPU lacks.
LinearKernels parse_linear_kernels(std::string_view name);
std::string_view linear_kernels_name(LinearKernels kernels);

// "cpu f32", "cuda:0 bf16", "cpu f32 int8", "cpu f32 nf4" (quantized weights).
std::string describe(const ComputeOptions& options);
std::string_view short_dtype_name(at::ScalarType dtype);
std::string_view quant_name(WeightQuant quant);  // "none", "int8", "nf4", "nf4-nodq"

}  // namespace bouquet::gpu

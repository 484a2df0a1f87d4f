// NF4 weights (bitsandbytes' format, core/nf4_layout.h): quantized once on load from any floating
// dtype, read by the CPU kernels (gpu/kernels/) in place, and widened again by dequantize_nf4 for
// whatever else needs a dense weight (autograd, other devices).
#pragma once

#include "gpu/kernels/nf4_tables.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace bouquet::gpu {

struct Nf4Weight {
  int64_t out = 0;
  int64_t in = 0;
  bool double_quant = false;
  at::Tensor indices;              // uint8 [out, blocks_per_row * 32]: two 4-bit level indices a byte, low first
  at::Tensor absmax;               // f32 [out * blocks_per_row] without double quantization
  at::Tensor absmax_codes;         // uint8 [out * blocks_per_row] with it: dynamic_code_8bit() indices
  at::Tensor absmax_group_scales;  // f32 [ceil(blocks / 256)] with it
  float absmax_offset = 0.0f;      // with it: the mean absmax, taken out before quantizing

  uint64_t bytes() const;  // equals core::nf4_matrix_bytes(out, in, double_quant)
  // Where the kernels find each block's absmax (CPU tensors only).
  kernels::Nf4Absmax kernel_absmax() const;
};

// `weight`: [out, in] in any floating dtype. Each block of 64 weights of a row (the last one
// padded with zeros) keeps its largest magnitude and, per weight, the nearest of the 16 levels
// times it. The result lives on the weight's device.
Nf4Weight quantize_nf4(const at::Tensor& weight, bool double_quant);

// [out, in] in `dtype`: level * absmax per weight, on the weight's device.
at::Tensor dequantize_nf4(const Nf4Weight& weight, at::ScalarType dtype);

// f32 [out * blocks_per_row]: each block's absmax as the kernels see it.
at::Tensor nf4_block_absmax(const Nf4Weight& weight);

}  // namespace bouquet::gpu

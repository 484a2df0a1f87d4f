// The fixed tables of bitsandbytes' NF4 format (core/nf4_layout.h gives its sizes): the 16 levels
// a 4-bit index selects, and the 256-entry signed "dynamic" 8-bit code its double quantization
// stores absmaxes in. Torch-free: the kernels read them, gpu/nf4.cpp quantizes with them.
#pragma once

#include <cstdint>

namespace bouquet::gpu::kernels {

// bitsandbytes' NF4 levels (QLoRA): quantiles of a normal distribution scaled to [-1, 1], with an
// exact zero; index 7 is 0.
inline constexpr float kNf4Levels[16] = {-1.0f,
                                         -0.6961928009986877f,
                                         -0.5250730514526367f,
                                         -0.39491748809814453f,
                                         -0.28444138169288635f,
                                         -0.18477343022823334f,
                                         -0.09105003625154495f,
                                         0.0f,
                                         0.07958029955625534f,
                                         0.16093020141124725f,
                                         0.24611230194568634f,
                                         0.33791524171829224f,
                                         0.44070982933044434f,
                                         0.5626170039176941f,
                                         0.7229568362236023f,
                                         1.0f};

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted
// ascending: 256 values in [-1, 1] spread over seven decades, 0 and 1 included.
const float* dynamic_code_8bit();

// Where block `block` (counted over the whole matrix, row-major) of an NF4 matrix finds its
// absmax: `absmax` (f32 per block) without double quantization; else an 8-bit code per block,
// an f32 scale per kNf4AbsmaxGroupBlocks blocks and the mean that was taken out.
struct Nf4Absmax {
  const float* absmax = nullptr;
  const uint8_t* codes = nullptr;
  const float* group_scales = nullptr;
  float offset = 0.0f;

  float of_block(int64_t block) const;
  // The absmaxes of blocks first .. first + count - 1: `absmax` itself, or decoded into `scratch`.
  const float* blocks(int64_t first, int64_t count, float* scratch) const;
};

}  // namespace bouquet::gpu::kernels

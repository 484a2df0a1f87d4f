// Small-batch matrix products for decode on the CPU, where reading the weights once from memory
// is the whole cost: y[r, o] = scale[o] * sum_i x[r, i] * w[o, i] for a few rows r (batch *
// new_tokens), with the weights in f32, bf16, int8 or NF4 and inputs, sums and outputs in f32.
//
// One implementation per instruction set, compiled with function-level target attributes so the
// binary runs on any x86-64; detected_isa() picks the best one the running CPU has. Torch-free:
// gpu/linear.cpp adapts tensors to it.
#pragma once

#include "gpu/kernels/nf4_tables.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace bouquet::gpu::kernels {

enum class Isa { portable, avx2, avx512 };

// The best Isa of this CPU (AVX-512 needs F, BW and VL; AVX2 needs FMA too).
Isa detected_isa();
bool isa_supported(Isa isa);
// Every Isa this CPU can run, portable first.
std::vector<Isa> supported_isas();
std::string_view isa_name(Isa isa);  // "portable", "avx2", "avx512"

// nf4: bitsandbytes' format (core/nf4_layout.h); each row is padded to whole blocks of 64
// weights, 32 bytes each, byte k of a block holding weight 2k in its low nibble and 2k + 1 in its
// high one.
enum class WeightType { f32, bf16, int8, nf4 };

// The kernels are written for at most this many rows (batch * new tokens; the batching of
// sessions needs 16): every weight is read from memory once for all rows, and the rows a
// register file cannot hold at once take further passes over the same weight row from cache.
// Past it, a blocked matrix product (libtorch) reads the weights fewer times per row.
inline constexpr int64_t kMatvecRowsMax = 16;

struct MatvecProblem {
  const float* x = nullptr;  // [rows, in], row-major, contiguous
  int64_t rows = 0;          // 1 .. kMatvecRowsMax
  int64_t in = 0;
  const void* weight = nullptr;  // [out, in], row-major, contiguous, of weight_type
  WeightType weight_type = WeightType::f32;
  const float* scales = nullptr;  // [out]: per-row scale, int8 only (null otherwise)
  int64_t out = 0;
  float* y = nullptr;    // [rows, out], row-major
  Nf4Absmax nf4_absmax;  // nf4 only: each block's absmax
};

// Writes y[r, o] for every row r and o in [out_begin, out_end): disjoint ranges may run on
// different threads at once. `isa` must be supported (BOUQUET_CHECK).
void matvec(Isa isa, const MatvecProblem& problem, int64_t out_begin, int64_t out_end);

}  // namespace bouquet::gpu::kernels

// How many bytes NF4 weights take, so that the engine (gpu/nf4.h, which stores them) and the
// simulator's cost model (sim/cost_model.h, which charges for them) agree to the byte.
//
// NF4 is bitsandbytes' 4-bit "normal float" format (QLoRA): each block of kNf4BlockValues
// consecutive weights of a row holds 4-bit indices into 16 fixed levels and one absmax scale.
// - Without double quantization the absmax is an f32: 4 + 32 / 64 = 4.5 bits per weight.
// - With it (bitsandbytes' compress_statistics, the default of its Linear4bit) the absmaxes are
//   themselves quantized to 8 bits, with one f32 scale per kNf4AbsmaxGroupBlocks of them and one
//   f32 mean per matrix: 4 + 8 / 64 + 32 / (64 * 256) = ~4.127 bits per weight.
#pragma once

#include <cstdint>

namespace bouquet::core {

inline constexpr int64_t kNf4BlockValues = 64;
inline constexpr int64_t kNf4AbsmaxGroupBlocks = 256;

// Blocks in one row of `in` weights: a partial last block is padded (its padding is stored).
constexpr int64_t nf4_blocks_per_row(int64_t in) { return (in + kNf4BlockValues - 1) / kNf4BlockValues; }

// Bytes an [out, in] matrix takes as NF4: the 4-bit indices, then the absmaxes.
constexpr uint64_t nf4_matrix_bytes(int64_t out, int64_t in, bool double_quant) {
  const int64_t blocks = out * nf4_blocks_per_row(in);
  const int64_t indices = blocks * kNf4BlockValues / 2;
  if (!double_quant) return static_cast<uint64_t>(indices + 4 * blocks);
  const int64_t groups = (blocks + kNf4AbsmaxGroupBlocks - 1) / kNf4AbsmaxGroupBlocks;
  return static_cast<uint64_t>(indices + blocks + 4 * groups + 4);
}

// The bits per weight of a large matrix whose rows are whole blocks (the limit of the above).
constexpr double nf4_bits_per_weight(bool double_quant) {
  return double_quant ? 4.0 + 8.0 / kNf4BlockValues + 32.0 / (kNf4BlockValues * kNf4AbsmaxGroupBlocks)
                      : 4.0 + 32.0 / kNf4BlockValues;
}

}  // namespace bouquet::core

// How activation values travel on the wire, and the codecs themselves (pure functions on byte
// buffers; no torch). The simulator charges packed_size(); the net layer and the tests pack and
// unpack real values with the same functions, so both worlds agree on every byte.
//
// Byte layouts (all little-endian), for n values:
//   none            the values in their own dtype: n * dtype_bytes(dtype)
//   float16         IEEE binary16 per value, round to nearest even: 2n
//   int8_blockwise  ceil(n/64) float16 scales first, then n int8 values: n + 2*ceil(n/64).
//                   Block k holds values [64k, 64k+64); its scale is absmax/127 over the
//                   block's finite values, rounded to float16 (capped at 65504), and
//                   value = int8 * scale. NaN packs as 0; +-inf saturates to +-127.
// Enum values are on the wire: never renumber them.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace bouquet::core {

enum class Compression : uint8_t { none = 0, float16 = 1, int8_blockwise = 2 };
// Element type of an activation where it is computed (and on the wire under Compression::none).
enum class DType : uint8_t { float32 = 0, float16 = 1, bfloat16 = 2 };

inline constexpr uint64_t kInt8BlockValues = 64;

std::string_view to_string(Compression compression);  // "none", "float16", "int8_blockwise"
std::string_view to_string(DType dtype);              // "float32", "float16", "bfloat16"
bool is_known_compression(uint8_t value);
bool is_known_dtype(uint8_t value);

uint64_t dtype_bytes(DType dtype);
// Exact wire bytes of `count` values of `dtype` packed with `compression`.
uint64_t packed_size(Compression compression, DType dtype, uint64_t count);

// Appends exactly packed_size(compression, dtype, values.size()) bytes to `out`. Under
// Compression::none values are first rounded to `dtype` (a no-op for float32).
void pack_values(std::span<const float> values, Compression compression, DType dtype, std::vector<uint8_t>& out);
// Inverse of pack_values. `bytes` must hold exactly packed_size(compression, dtype, count) bytes
// (the wire decoder checks that before calling; a mismatch here is a programmer error).
std::vector<float> unpack_values(std::span<const uint8_t> bytes, Compression compression, DType dtype, uint64_t count);

// Scalar conversions, exposed for tests and for drivers converting tensors element by element.
uint16_t float_to_half(float value);      // round to nearest even; overflow -> inf; NaN stays NaN
float half_to_float(uint16_t bits);       // exact
uint16_t float_to_bfloat16(float value);  // round to nearest even; NaN stays NaN
float bfloat16_to_float(uint16_t bits);   // exact

}  // namespace bouquet::core

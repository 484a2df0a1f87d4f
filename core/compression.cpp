#include "core/compression.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/check.h"

namespace bouquet::core {
namespace {

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

uint64_t block_count(uint64_t count) { return (count + kInt8BlockValues - 1) / kInt8BlockValues; }

int8_t quantize(float value, float scale) {
  if (std::isnan(value) || scale == 0.0f) return 0;
  const float q = value / scale;  // |q| <= ~127 for finite values by construction
  if (!(q < 127.0f)) return 127;
  if (!(q > -127.0f)) return -127;
  return static_cast<int8_t>(std::lround(q));
}

void pack_int8(std::span<const float> values, std::vector<uint8_t>& out) {
  const uint64_t blocks = block_count(values.size());
  std::vector<float> scales(blocks);
  for (uint64_t b = 0; b < blocks; ++b) {
    float absmax = 0.0f;
    const uint64_t end = std::min<uint64_t>(values.size(), (b + 1) * kInt8BlockValues);
    for (uint64_t i = b * kInt8BlockValues; i < end; ++i) {
      if (std::isfinite(values[i])) absmax = std::max(absmax, std::fabs(values[i]));
    }
    // Non-finite values do not enter the scale (they saturate instead), and the scale is capped
    // at the largest float16, so every scale on the wire is finite and decoding never makes NaN.
    const uint16_t half = float_to_half(std::min(absmax / 127.0f, 65504.0f));
    put_u16(out, half);
    // Quantize against the scale the receiver will see, so decode(encode(x)) is as close as it
    // can be and both sides agree bit for bit.
    scales[b] = half_to_float(half);
  }
  for (uint64_t i = 0; i < values.size(); ++i) {
    out.push_back(static_cast<uint8_t>(quantize(values[i], scales[i / kInt8BlockValues])));
  }
}

void unpack_int8(std::span<const uint8_t> bytes, uint64_t count, std::vector<float>& out) {
  const uint64_t blocks = block_count(count);
  const uint8_t* q = bytes.data() + 2 * blocks;
  for (uint64_t i = 0; i < count; ++i) {
    const float scale = half_to_float(get_u16(bytes.data() + 2 * (i / kInt8BlockValues)));
    out[i] = static_cast<float>(static_cast<int8_t>(q[i])) * scale;
  }
}

}  // namespace

std::string_view to_string(Compression compression) {
  switch (compression) {
    case Compression::none:
      return "none";
    case Compression::float16:
      return "float16";
    case Compression::int8_blockwise:
      return "int8_blockwise";
  }
  return "unknown";
}

std::string_view to_string(DType dtype) {
  switch (dtype) {
    case DType::float32:
      return "float32";
    case DType::float16:
      return "float16";
    case DType::bfloat16:
      return "bfloat16";
  }
  return "unknown";
}

bool is_known_compression(uint8_t value) { return value <= 2; }
bool is_known_dtype(uint8_t value) { return value <= 2; }

uint64_t dtype_bytes(DType dtype) { return dtype == DType::float32 ? 4 : 2; }

uint64_t packed_size(Compression compression, DType dtype, uint64_t count) {
  switch (compression) {
    case Compression::none:
      return count * dtype_bytes(dtype);
    case Compression::float16:
      return 2 * count;
    case Compression::int8_blockwise:
      return count + 2 * block_count(count);
  }
  BOUQUET_CHECK(false, "unknown compression");
}

void pack_values(std::span<const float> values, Compression compression, DType dtype, std::vector<uint8_t>& out) {
  out.reserve(out.size() + packed_size(compression, dtype, values.size()));
  switch (compression) {
    case Compression::none:
      for (float v : values) {
        if (dtype == DType::float32)
          put_u32(out, std::bit_cast<uint32_t>(v));
        else if (dtype == DType::float16)
          put_u16(out, float_to_half(v));
        else
          put_u16(out, float_to_bfloat16(v));
      }
      return;
    case Compression::float16:
      for (float v : values) put_u16(out, float_to_half(v));
      return;
    case Compression::int8_blockwise:
      pack_int8(values, out);
      return;
  }
  BOUQUET_CHECK(false, "unknown compression");
}

std::vector<float> unpack_values(std::span<const uint8_t> bytes, Compression compression, DType dtype, uint64_t count) {
  BOUQUET_CHECK(bytes.size() == packed_size(compression, dtype, count),
                "unpack_values: byte count does not match the packed size");
  std::vector<float> out(count);
  const uint8_t* p = bytes.data();
  switch (compression) {
    case Compression::none:
      for (uint64_t i = 0; i < count; ++i) {
        if (dtype == DType::float32)
          out[i] = std::bit_cast<float>(get_u32(p + 4 * i));
        else if (dtype == DType::float16)
          out[i] = half_to_float(get_u16(p + 2 * i));
        else
          out[i] = bfloat16_to_float(get_u16(p + 2 * i));
      }
      break;
    case Compression::float16:
      for (uint64_t i = 0; i < count; ++i) out[i] = half_to_float(get_u16(p + 2 * i));
      break;
    case Compression::int8_blockwise:
      unpack_int8(bytes, count, out);
      break;
  }
  return out;
}

uint16_t float_to_half(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (keep NaN quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x0200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x33000000u) return sign;                                    // below half the smallest subnormal: +-0
  const int exponent = static_cast<int>(abs >> 23) - 127;
  uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;  // with the implicit bit
  int shift;                                          // how many low bits of the 24-bit mantissa are dropped
  uint32_t half_exponent;
  if (exponent < -14) {  // subnormal half: value = m * 2^-24
    shift = 13 + (-14 - exponent);
    half_exponent = 0;
  } else {
    shift = 13;
    half_exponent = static_cast<uint32_t>(exponent + 15);
    mantissa &= 0x7fffffu;
  }
  uint32_t result = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (result & 1u))) ++result;
  // A carry out of the mantissa correctly bumps the exponent (and subnormal -> normal).
  return static_cast<uint16_t>(sign | ((half_exponent << 10) + result));
}

float half_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t float_to_bfloat16(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float bfloat16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

}  // namespace bouquet::core

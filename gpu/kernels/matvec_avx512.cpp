// AVX-512 (F, BW, VL) matrix-vector kernels: 16 floats per register, 32 registers, so up to 16
// accumulators (4 weight rows x 4 input rows, or 1 x 16) stay in registers.
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

// GCC 12's AVX-512 headers build some results from a deliberately undefined register
// (_mm256_undefined_pd inside _mm512_reduce_add_ps), which -Wuninitialized reports at every use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

struct Simd {
  using Reg = __m512;
  static constexpr int64_t kWidth = 16;
  static constexpr int kWeightRowsFew = 4;
  static constexpr int kAccumulatorsMax = 16;
  static constexpr int kWeightRowsMany = 2;

  BOUQUET_KERNEL_TARGET static Reg zero() { return _mm512_setzero_ps(); }
  BOUQUET_KERNEL_TARGET static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static void load_weights(const float* p, Reg out[1]) { out[0] = _mm512_loadu_ps(p); }
  // 32 bf16: the low half of each 32-bit lane (even elements) shifted up, the high half masked.
  BOUQUET_KERNEL_TARGET static void load_weights(const uint16_t* p, Reg out[2]) {
    const __m512i pairs = _mm512_loadu_si512(p);
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
    out[1] = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(int32_t(0xFFFF0000u))));
  }
  // 64 int8: one byte shuffle per phase puts byte q of each 32-bit lane on top with zeros below,
  // which converts exactly to w * 2^24 (kInt8Unit undoes it once per sum; inputs would need
  // |x| > 2^100 to overflow).
  static constexpr float kInt8Unit = 0x1p-24f;
  // Shuffle control for phase q: within each 16-byte lane, dword d takes byte 4d + q on top and
  // zeros (0x80) below.
  BOUQUET_KERNEL_TARGET static __m512i byte_on_top(int q) {
    return _mm512_broadcast_i32x4(
        _mm_setr_epi32(int32_t(0x00808080u | uint32_t(0 + q) << 24), int32_t(0x00808080u | uint32_t(4 + q) << 24),
                       int32_t(0x00808080u | uint32_t(8 + q) << 24), int32_t(0x00808080u | uint32_t(12 + q) << 24)));
  }
  BOUQUET_KERNEL_TARGET static void load_weights(const int8_t* p, Reg out[4]) {
    const __m512i quads = _mm512_loadu_si512(p);
    out[0] = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(quads, byte_on_top(0)));
    out[1] = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(quads, byte_on_top(1)));
    out[2] = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(quads, byte_on_top(2)));
    out[3] = _mm512_cvtepi32_ps(_mm512_and_si512(quads, _mm512_set1_epi32(int32_t(0xFF000000u))));
  }
  // NF4: 64 bytes hold 128 weights, two blocks (lanes 0-7 the first, 8-15 the second). The 16
  // levels fill one register and a permute indexes it by the low 4 bits of each lane, so the
  // nibbles need shifts but no masks.
  BOUQUET_KERNEL_TARGET static void load_nf4_levels(const uint8_t* p, Reg out[8]) {
    const __m512i n = _mm512_loadu_si512(p);
    const __m512 levels = _mm512_loadu_ps(kNf4Levels);
    out[0] = _mm512_permutexvar_ps(n, levels);
    out[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 4), levels);
    out[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 8), levels);
    out[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 12), levels);
    out[4] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 16), levels);
    out[5] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 20), levels);
    out[6] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 24), levels);
    out[7] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 28), levels);
  }
  BOUQUET_KERNEL_TARGET static Reg nf4_scale(const float* absmax) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(absmax[0]), _mm512_set1_ps(absmax[1]));
  }
  // Half a load: one block of 64 weights in lanes 0-7 (lanes 8-15 read nothing and hold a level
  // that meets zero inputs), for rows of an odd number of blocks (576 = 4.5 loads).
  static constexpr bool kNf4HalfLoads = true;
  BOUQUET_KERNEL_TARGET static void load_nf4_levels_half(const uint8_t* p, Reg out[8]) {
    const __m512i n = _mm512_maskz_loadu_epi32(0x00FF, p);
    const __m512 levels = _mm512_loadu_ps(kNf4Levels);
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) out[q] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 4 * q), levels);
  }
  BOUQUET_KERNEL_TARGET static Reg load_half(const float* p) { return _mm512_maskz_loadu_ps(0x00FF, p); }
  BOUQUET_KERNEL_TARGET static Reg broadcast(float value) { return _mm512_set1_ps(value); }
  BOUQUET_KERNEL_TARGET static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  BOUQUET_KERNEL_TARGET static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  BOUQUET_KERNEL_TARGET static Reg fma(Reg a, Reg b, Reg acc) { return _mm512_fmadd_ps(a, b, acc); }
  BOUQUET_KERNEL_TARGET static float sum(Reg r) { return _mm512_reduce_add_ps(r); }
};

#include "gpu/kernels/matvec_body.inc"

}  // namespace

void matvec_avx512(const MatvecProblem& problem, int64_t out_begin, int64_t out_end) {
  matvec_any(problem, out_begin, out_end);
}

}  // namespace bouquet::gpu::kernels

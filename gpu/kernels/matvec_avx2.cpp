// AVX2 + FMA matrix-vector kernels: 8 floats per register and 16 registers, so at most 8
// accumulators (4 weight rows x 2 input rows, or fewer weight rows for more input rows).
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET __attribute__((target("avx2,fma")))

struct Simd {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static constexpr bool kNf4HalfLoads = false;  // a load is one NF4 block: no halves
  static constexpr int kWeightRowsFew = 2;
  static constexpr int kAccumulatorsMax = 8;
  static constexpr int kWeightRowsMany = 1;
  static constexpr float kInt8Unit = 1.0f;

  BOUQUET_KERNEL_TARGET static Reg zero() { return _mm256_setzero_ps(); }
  BOUQUET_KERNEL_TARGET static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static void load_weights(const float* p, Reg out[1]) { out[0] = _mm256_loadu_ps(p); }
  // 16 bf16: the low half of each 32-bit lane (even elements) shifted up, the high half masked.
  BOUQUET_KERNEL_TARGET static void load_weights(const uint16_t* p, Reg out[2]) {
    const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    out[0] = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
    out[1] = _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32(int32_t(0xFFFF0000u))));
  }
  // 32 int8: byte q of each 32-bit lane moved to the top, then shifted down with its sign.
  BOUQUET_KERNEL_TARGET static void load_weights(const int8_t* p, Reg out[4]) {
    const __m256i quads = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    out[0] = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(quads, 24), 24));
    out[1] = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(quads, 16), 24));
    out[2] = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(quads, 8), 24));
    out[3] = _mm256_cvtepi32_ps(_mm256_srai_epi32(quads, 24));
  }
  // NF4: 32 bytes hold 64 weights, one block. A permute reads 8 entries, so the 16 levels take
  // two registers and bit 3 of the index (shifted up to the sign bit) picks between them.
  BOUQUET_KERNEL_TARGET static Reg nf4_level(__m256i index, __m256 low, __m256 high) {
    const __m256 from_low = _mm256_permutevar8x32_ps(low, index);
    const __m256 from_high = _mm256_permutevar8x32_ps(high, index);
    return _mm256_blendv_ps(from_low, from_high, _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
  }
  BOUQUET_KERNEL_TARGET static void load_nf4_levels(const uint8_t* p, Reg out[8]) {
    const __m256i n = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256 low = _mm256_loadu_ps(kNf4Levels), high = _mm256_loadu_ps(kNf4Levels + 8);
    out[0] = nf4_level(n, low, high);
    out[1] = nf4_level(_mm256_srli_epi32(n, 4), low, high);
    out[2] = nf4_level(_mm256_srli_epi32(n, 8), low, high);
    out[3] = nf4_level(_mm256_srli_epi32(n, 12), low, high);
    out[4] = nf4_level(_mm256_srli_epi32(n, 16), low, high);
    out[5] = nf4_level(_mm256_srli_epi32(n, 20), low, high);
    out[6] = nf4_level(_mm256_srli_epi32(n, 24), low, high);
    out[7] = nf4_level(_mm256_srli_epi32(n, 28), low, high);
  }
  BOUQUET_KERNEL_TARGET static Reg nf4_scale(const float* absmax) { return _mm256_set1_ps(absmax[0]); }
  BOUQUET_KERNEL_TARGET static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  BOUQUET_KERNEL_TARGET static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  BOUQUET_KERNEL_TARGET static Reg fma(Reg a, Reg b, Reg acc) { return _mm256_fmadd_ps(a, b, acc); }
  BOUQUET_KERNEL_TARGET static float sum(Reg r) {
    const __m128 pairs = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    const __m128 twos = _mm_add_ps(pairs, _mm_movehl_ps(pairs, pairs));
    return _mm_cvtss_f32(_mm_add_ss(twos, _mm_movehdup_ps(twos)));
  }
};

#include "gpu/kernels/matvec_body.inc"

}  // namespace

void matvec_avx2(const MatvecProblem& problem, int64_t out_begin, int64_t out_end) {
  matvec_any(problem, out_begin, out_end);
}

}  // namespace bouquet::gpu::kernels

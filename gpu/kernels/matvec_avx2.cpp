// AVX2 + FMA matrix-vector kernels: 8 floats per register and 16 registers, so at most 8
// accumulators (4 weight rows x 2 input rows, or fewer weight rows for more input rows).
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

#include <immintrin.h>

#include <cstring>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET __attribute__((target("avx2,fma")))

struct Simd {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static constexpr int kWeightRowsFew = 2;
  static constexpr int kWeightRowsMany = 1;

  BOUQUET_KERNEL_TARGET static Reg zero() { return _mm256_setzero_ps(); }
  BOUQUET_KERNEL_TARGET static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const float* p) { return _mm256_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const uint16_t* p) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
  }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const int8_t* p) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
  }
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

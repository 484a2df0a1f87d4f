// AVX-512 (F, BW, VL) matrix-vector kernels: 16 floats per register, 32 registers, so up to 16
// accumulators (4 weight rows x 4 input rows) stay in registers.
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

// GCC 12's AVX-512 headers build some results from a deliberately undefined register
// (_mm256_undefined_pd inside _mm512_reduce_add_ps), which -Wuninitialized reports at every use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

struct Simd {
  using Reg = __m512;
  static constexpr int64_t kWidth = 16;
  static constexpr int kWeightRowsFew = 4;
  static constexpr int kWeightRowsMany = 2;

  BOUQUET_KERNEL_TARGET static Reg zero() { return _mm512_setzero_ps(); }
  BOUQUET_KERNEL_TARGET static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const float* p) { return _mm512_loadu_ps(p); }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const uint16_t* p) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
  }
  BOUQUET_KERNEL_TARGET static Reg load_weight(const int8_t* p) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
  }
  BOUQUET_KERNEL_TARGET static Reg fma(Reg a, Reg b, Reg acc) { return _mm512_fmadd_ps(a, b, acc); }
  BOUQUET_KERNEL_TARGET static float sum(Reg r) { return _mm512_reduce_add_ps(r); }
};

#include "gpu/kernels/matvec_body.inc"

}  // namespace

void matvec_avx512(const MatvecProblem& problem, int64_t out_begin, int64_t out_end) {
  matvec_any(problem, out_begin, out_end);
}

}  // namespace bouquet::gpu::kernels

// Portable matrix-vector kernels for any x86-64 (and any other CPU): plain C++ on a small array
// of floats, which the compiler vectorizes with whatever the baseline target has (SSE2 here).
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET

// Simd uses weight_value() before the shared body defines it.
inline float weight_value(float w);
inline float weight_value(int8_t w);
inline float weight_value(uint16_t w);

struct Simd {
  static constexpr int64_t kWidth = 8;
  static constexpr bool kNf4HalfLoads = false;  // a load is one NF4 block: no halves
  struct Reg {
    float lane[kWidth];
  };
  static constexpr int kWeightRowsFew = 2;
  static constexpr int kWeightRowsMany = 1;
  static constexpr float kInt8Unit = 1.0f;
  static constexpr int kAccumulatorsMax = 4;

  static Reg zero() { return Reg{}; }
  static Reg load(const float* p) {
    Reg r;
    for (int64_t k = 0; k < kWidth; ++k) r.lane[k] = p[k];
    return r;
  }
  // kPhases * kWidth weights: out[q] lane k is element k * kPhases + q (matvec_body.inc).
  template <typename Elem, int P>
  static void load_weights(const Elem* p, Reg (&out)[P]) {
    float wide[P * kWidth];  // converted in order first: a loop the compiler vectorizes
    for (int64_t k = 0; k < P * kWidth; ++k) wide[k] = weight_value(p[k]);
    for (int q = 0; q < P; ++q) {
      for (int64_t k = 0; k < kWidth; ++k) out[q].lane[k] = wide[k * P + q];
    }
  }
  // NF4: lane k is the 32-bit word of bytes 4k .. 4k + 3, nibble q of it element 8k + q.
  static void load_nf4_levels(const uint8_t* p, Reg out[8]) {
    for (int64_t k = 0; k < kWidth; ++k) {
      const uint32_t word = uint32_t(p[4 * k]) | uint32_t(p[4 * k + 1]) << 8 | uint32_t(p[4 * k + 2]) << 16 |
                            uint32_t(p[4 * k + 3]) << 24;
      for (int q = 0; q < 8; ++q) out[q].lane[k] = kNf4Levels[(word >> (4 * q)) & 15];
    }
  }
  static Reg nf4_scale(const float* absmax) {
    Reg r;
    for (int64_t k = 0; k < kWidth; ++k) r.lane[k] = absmax[8 * k / 64];
    return r;
  }
  static Reg mul(const Reg& a, Reg b) {
    for (int64_t k = 0; k < kWidth; ++k) b.lane[k] *= a.lane[k];
    return b;
  }
  static Reg add(const Reg& a, Reg b) {
    for (int64_t k = 0; k < kWidth; ++k) b.lane[k] += a.lane[k];
    return b;
  }
  static Reg fma(const Reg& a, const Reg& b, Reg acc) {
    for (int64_t k = 0; k < kWidth; ++k) acc.lane[k] += a.lane[k] * b.lane[k];
    return acc;
  }
  static float sum(const Reg& r) {
    float total = 0;
    for (int64_t k = 0; k < kWidth; ++k) total += r.lane[k];
    return total;
  }
};

#include "gpu/kernels/matvec_body.inc"

}  // namespace

void matvec_portable(const MatvecProblem& problem, int64_t out_begin, int64_t out_end) {
  matvec_any(problem, out_begin, out_end);
}

}  // namespace bouquet::gpu::kernels

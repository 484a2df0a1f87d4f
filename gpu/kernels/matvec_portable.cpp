// Portable matrix-vector kernels for any x86-64 (and any other CPU): plain C++ on a small array
// of floats, which the compiler vectorizes with whatever the baseline target has (SSE2 here).
#include "gpu/kernels/matvec_isa.h"

#include "core/check.h"

#include <cstring>

namespace bouquet::gpu::kernels {
namespace {

#define BOUQUET_KERNEL_TARGET

// Simd uses weight_value() before the shared body defines it.
inline float weight_value(float w);
inline float weight_value(int8_t w);
inline float weight_value(uint16_t w);

struct Simd {
  static constexpr int64_t kWidth = 8;
  struct Reg {
    float lane[kWidth];
  };
  static constexpr int kWeightRowsFew = 2;
  static constexpr int kWeightRowsMany = 1;

  static Reg zero() { return Reg{}; }
  template <typename Elem>
  static Reg load_weight(const Elem* p) {
    Reg r;
    for (int64_t k = 0; k < kWidth; ++k) r.lane[k] = weight_value(p[k]);
    return r;
  }
  static Reg load(const float* p) { return load_weight(p); }
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

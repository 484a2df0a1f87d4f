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
  struct Nf4Table {
    float level[16];
  };
  static Nf4Table nf4_table(float absmax) {
    Nf4Table table;
    for (int k = 0; k < 16; ++k) table.level[k] = kNf4Levels[k] * absmax;
    return table;
  }
  static void load_nf4(const uint8_t* p, const Nf4Table& table, Reg out[2]) {
    for (int64_t k = 0; k < kWidth; ++k) {
      out[0].lane[k] = table.level[p[k] & 15];
      out[1].lane[k] = table.level[p[k] >> 4];
    }
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

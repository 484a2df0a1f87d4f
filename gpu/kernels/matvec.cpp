#include "gpu/kernels/matvec.h"

#include "core/check.h"
#include "gpu/kernels/matvec_isa.h"

namespace bouquet::gpu::kernels {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return true;
    case Isa::avx2:
#if defined(__x86_64__)
      // libgcc's checks include the operating system's support for the wider registers.
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case Isa::avx512:
#if defined(__x86_64__)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && isa_supported(Isa::avx2);
#else
      return false;
#endif
  }
  return false;
}

Isa detected_isa() {
  static const Isa best = isa_supported(Isa::avx512) ? Isa::avx512
                          : isa_supported(Isa::avx2) ? Isa::avx2
                                                     : Isa::portable;
  return best;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512}) {
    if (isa_supported(isa)) isas.push_back(isa);
  }
  return isas;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "unknown";
}

void matvec(Isa isa, const MatvecProblem& p, int64_t out_begin, int64_t out_end) {
  BOUQUET_CHECK(isa_supported(isa), "matvec: this CPU lacks the instruction set asked for");
  BOUQUET_CHECK(p.rows >= 1 && p.rows <= kMatvecRowsMax && p.in >= 0 && p.out >= 0,
                "matvec: rows must be 1 .. kMatvecRowsMax and sizes non-negative");
  BOUQUET_CHECK(0 <= out_begin && out_begin <= out_end && out_end <= p.out, "matvec: output range out of bounds");
  BOUQUET_CHECK((p.weight_type == WeightType::int8) == (p.scales != nullptr),
                "matvec: int8 weights need scales, other weights none");
  BOUQUET_CHECK(p.weight_type != WeightType::nf4 || p.nf4_absmax.absmax != nullptr ||
                    (p.nf4_absmax.codes != nullptr && p.nf4_absmax.group_scales != nullptr),
                "matvec: nf4 weights need their absmaxes");
  if (out_begin == out_end) return;
  switch (isa) {
    case Isa::portable:
      return matvec_portable(p, out_begin, out_end);
    case Isa::avx2:
      return matvec_avx2(p, out_begin, out_end);
    case Isa::avx512:
      return matvec_avx512(p, out_begin, out_end);
  }
}

}  // namespace bouquet::gpu::kernels

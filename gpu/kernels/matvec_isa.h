// The per-instruction-set entry points behind kernels::matvec (internal to gpu/kernels/). Each is
// compiled with its own function target attributes; call one only on a CPU that has it.
#pragma once

#include "core/nf4_layout.h"
#include "gpu/kernels/matvec.h"

namespace bouquet::gpu::kernels {

void matvec_portable(const MatvecProblem& problem, int64_t out_begin, int64_t out_end);
void matvec_avx2(const MatvecProblem& problem, int64_t out_begin, int64_t out_end);
void matvec_avx512(const MatvecProblem& problem, int64_t out_begin, int64_t out_end);

}  // namespace bouquet::gpu::kernels

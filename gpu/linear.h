// Linear: the one place where a block applies a weight matrix, y = x W^T (+ bias), as
// at::linear does. Families hold their weights as Linear and call it; the choice of kernel lives
// here, not in the families.
//
// What it promises:
// - The result equals at::linear(x, weight, bias) in shape, dtype and device, and numerically
//   within floating-point rounding (a different summation order), for any input.
// - Autograd is never bypassed: when gradients are recorded for the input, the product goes
//   through libtorch, so forward and backward behave as with at::linear.
// - On the CPU in f32 or bf16, with no gradient to record, hand-written matrix-vector kernels
//   run instead (gpu/kernels/), for the instruction set options.kernels names (by default the
//   best this CPU has: AVX-512, AVX2+FMA, or portable code): f32, int8 and NF4 weights for any
//   number of rows, in passes of kernels::kMatvecRowsMax; bf16 weights up to 8 rows, past which
//   oneDNN is faster. They split the outputs over libtorch's threads in chunks taken in turn
//   when it has more than one (--threads), else run on the calling thread.
// - With WeightQuant::int8 the weight is held as int8 with one f32 scale per output row
//   (symmetric, max |w| / 127) and products accumulate in f32; the bias, if any, stays in the
//   compute dtype. Outputs then differ from f32 by the weights' rounding (see tests/gpu/quant*).
// - With WeightQuant::nf4 (or nf4_nodq) the weight is held as NF4 (gpu/nf4.h: 4-bit levels times
//   a per-64-weight absmax, itself 8-bit with double quantization); the kernels read it in place
//   for any number of rows (in passes of kMatvecRowsMax), and libtorch gets it widened.
// - With a LoRA site set (set_lora_site) and an adapter active on the calling thread
//   (gpu/lora.h's ActiveLora), the result adds that adapter's low-rank update of the site's
//   modules; the base weight itself is never changed, so adapters are chosen per call.
#pragma once

#include "gpu/compute_options.h"
#include "gpu/kernels/matvec.h"
#include "gpu/lora.h"
#include "gpu/nf4.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace bouquet::gpu {

class Linear {
 public:
  Linear() = default;
  // `weight`: [out_features, in_features] already in options' dtype and device (as load_block
  // gives it); `bias`: [out_features] or undefined. Quantizes once here when options.quant asks.
  Linear(const at::Tensor& weight, const ComputeOptions& options, const at::Tensor& bias = {});

  // [..., in_features] in the compute dtype and device -> [..., out_features], same dtype.
  at::Tensor operator()(const at::Tensor& input) const;

  // Which block and modules (PEFT's names) this matrix computes, for LoRA adapters.
  void set_lora_site(LoraSite site) { lora_site_ = std::move(site); }
  const LoraSite& lora_site() const { return lora_site_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  // Bytes held in memory for this matrix: weight (int8 plus scales, or NF4 indices plus absmaxes,
  // when quantized) and bias.
  uint64_t weight_bytes() const;

 private:
  bool kernels_apply(const at::Tensor& input) const;
  at::Tensor apply_with_kernels(const at::Tensor& input) const;
  at::Tensor apply_with_libtorch(const at::Tensor& input) const;

  std::optional<kernels::Isa> isa_;  // set when the small-batch kernels may serve this matrix
  at::ScalarType compute_dtype_ = at::kFloat;
  kernels::WeightType weight_type_ = kernels::WeightType::f32;
  at::Tensor weight_;  // compute dtype, int8, or NF4's indices when quantized
  at::Tensor scales_;  // f32 [out_features] when int8, else undefined
  std::optional<Nf4Weight> nf4_;
  at::Tensor bias_;  // compute dtype [out_features] or undefined
  int64_t in_features_ = 0;
  int64_t out_features_ = 0;
  LoraSite lora_site_;
};

// How many threads ran the calling thread's last product on the CPU kernels (1 when it was not
// split): what a test checks to see that --threads really shares the work.
int last_product_threads();

}  // namespace bouquet::gpu

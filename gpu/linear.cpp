#include "gpu/linear.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace bouquet::gpu {

Linear::Linear(const at::Tensor& weight, const ComputeOptions& options, const at::Tensor& bias)
    : weight_(weight.contiguous()), bias_(bias) {
  BOUQUET_CHECK(weight.dim() == 2, "Linear: the weight must be a matrix [out, in]");
  BOUQUET_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
                "Linear: the bias must be [out_features]");
  out_features_ = weight.size(0);
  in_features_ = weight.size(1);
  if (options.quant == WeightQuant::int8) {
    // Symmetric per-row scales: row o is weight[o] = int8[o] * scales[o]; an all-zero row keeps
    // scale 1 so nothing divides by zero.
    const at::Tensor w32 = weight_.to(at::kFloat);
    at::Tensor max_abs = w32.abs().amax(1);
    scales_ = at::where(max_abs > 0, max_abs / 127.0, at::ones_like(max_abs)).contiguous();
    weight_ = at::round(w32 / scales_.unsqueeze(1)).clamp(-127, 127).to(at::kChar).contiguous();
  }
}

at::Tensor Linear::apply_with_libtorch(const at::Tensor& input) const {
  if (!scales_.defined()) return at::linear(input, weight_, bias_);
  // Per-row scales commute with the product: (x q^T) * s == x (q * s)^T, and this keeps autograd
  // for the input intact.
  // int8 values are exact in every floating dtype; the scales are applied in f32 at least.
  const at::ScalarType dtype = input.scalar_type();
  const at::ScalarType wide = dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor y = (at::linear(input, weight_.to(dtype)).to(wide) * scales_.to(wide)).to(dtype);
  if (bias_.defined()) y = y + bias_;
  return y;
}

at::Tensor Linear::operator()(const at::Tensor& input) const {
  BOUQUET_CHECK(weight_.defined(), "Linear: used before it was given a weight");
  return apply_with_libtorch(input);
}

uint64_t Linear::weight_bytes() const {
  uint64_t total = weight_.numel() * weight_.element_size();
  if (scales_.defined()) total += scales_.numel() * scales_.element_size();
  if (bias_.defined()) total += bias_.numel() * bias_.element_size();
  return total;
}

}  // namespace bouquet::gpu

#include "gpu/nf4.h"

#include "core/check.h"
#include "core/nf4_layout.h"

#include <ATen/ATen.h>

namespace bouquet::gpu {
namespace {

at::Tensor table_tensor(const float* values, int64_t count, const at::Device& device) {
  return at::from_blob(const_cast<float*>(values), {count}, at::TensorOptions().dtype(at::kFloat)).clone().to(device);
}

// Index of the nearest entry of the ascending `table` for each value (ties to the lower one).
at::Tensor nearest(const at::Tensor& values, const at::Tensor& table) {
  const int64_t n = table.numel();
  const at::Tensor midpoints = (table.slice(0, 0, n - 1) + table.slice(0, 1, n)) / 2;
  return at::bucketize(values, midpoints, /*out_int32=*/true);
}

}  // namespace

uint64_t Nf4Weight::bytes() const {
  uint64_t total = indices.numel();
  if (double_quant) {
    total += absmax_codes.numel() + 4 * absmax_group_scales.numel() + 4;
  } else {
    total += 4 * absmax.numel();
  }
  return total;
}

kernels::Nf4Absmax Nf4Weight::kernel_absmax() const {
  kernels::Nf4Absmax result;
  if (double_quant) {
    result.codes = absmax_codes.data_ptr<uint8_t>();
    result.group_scales = absmax_group_scales.data_ptr<float>();
    result.offset = absmax_offset;
  } else {
    result.absmax = absmax.data_ptr<float>();
  }
  return result;
}

Nf4Weight quantize_nf4(const at::Tensor& weight, bool double_quant) {
  BOUQUET_CHECK(weight.dim() == 2, "quantize_nf4: the weight must be a matrix [out, in]");
  at::NoGradGuard no_grad;
  Nf4Weight q;
  q.out = weight.size(0);
  q.in = weight.size(1);
  q.double_quant = double_quant;
  const int64_t blocks = core::nf4_blocks_per_row(q.in);
  at::Tensor w = weight.detach().to(at::kFloat);
  if (blocks * core::kNf4BlockValues > q.in) w = at::constant_pad_nd(w, {0, blocks * core::kNf4BlockValues - q.in});
  w = w.reshape({q.out, blocks, core::kNf4BlockValues});
  const at::Tensor absmax = w.abs().amax(-1);
  // An all-zero block divides by 1 and lands on the zero level.
  const at::Tensor divisor = at::where(absmax > 0, absmax, at::ones_like(absmax)).unsqueeze(-1);
  const at::Tensor levels = table_tensor(kernels::kNf4Levels, 16, w.device());
  const at::Tensor index = nearest(w / divisor, levels);
  using at::indexing::Slice;
  q.indices = (index.index({"...", Slice(0, at::indexing::None, 2)}) +
               index.index({"...", Slice(1, at::indexing::None, 2)}) * 16)
                  .to(at::kByte)
                  .reshape({q.out, blocks * core::kNf4BlockValues / 2})
                  .contiguous();
  const at::Tensor flat = absmax.reshape({-1});
  if (!double_quant) {
    q.absmax = flat.contiguous();
    return q;
  }
  // bitsandbytes' double quantization: the absmaxes less their mean, in groups of 256, each group
  // scaled by its largest magnitude and stored as the nearest entry of the signed 8-bit dynamic code.
  const int64_t count = flat.numel();
  const int64_t groups = (count + core::kNf4AbsmaxGroupBlocks - 1) / core::kNf4AbsmaxGroupBlocks;
  q.absmax_offset = count == 0 ? 0.0f : flat.mean().item<float>();
  at::Tensor centered = flat - q.absmax_offset;
  centered = at::constant_pad_nd(centered, {0, groups * core::kNf4AbsmaxGroupBlocks - count});
  centered = centered.reshape({groups, core::kNf4AbsmaxGroupBlocks});
  const at::Tensor group_max = centered.abs().amax(-1);
  const at::Tensor group_divisor = at::where(group_max > 0, group_max, at::ones_like(group_max));
  const at::Tensor code = table_tensor(kernels::dynamic_code_8bit(), 256, w.device());
  q.absmax_codes = nearest(centered / group_divisor.unsqueeze(-1), code).reshape({-1}).slice(0, 0, count);
  q.absmax_codes = q.absmax_codes.to(at::kByte).contiguous();
  q.absmax_group_scales = group_max.contiguous();
  return q;
}

at::Tensor nf4_block_absmax(const Nf4Weight& q) {
  if (!q.double_quant) return q.absmax;
  const at::Tensor code = table_tensor(kernels::dynamic_code_8bit(), 256, q.absmax_codes.device());
  const at::Tensor group = at::arange(q.absmax_codes.numel(), q.absmax_codes.options().dtype(at::kLong))
                               .div(core::kNf4AbsmaxGroupBlocks, "floor");
  return code.index({q.absmax_codes.to(at::kLong)}) * q.absmax_group_scales.index({group}) + q.absmax_offset;
}

at::Tensor dequantize_nf4(const Nf4Weight& q, at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  const int64_t blocks = core::nf4_blocks_per_row(q.in);
  const at::Tensor bytes = q.indices.to(at::kLong);
  const at::Tensor index = at::stack({bytes.remainder(16), bytes.div(16, "floor")}, -1);
  const at::Tensor levels = table_tensor(kernels::kNf4Levels, 16, q.indices.device());
  at::Tensor w = levels.index({index}).reshape({q.out, blocks, core::kNf4BlockValues});
  w = w * nf4_block_absmax(q).reshape({q.out, blocks, 1});
  return w.reshape({q.out, blocks * core::kNf4BlockValues}).slice(1, 0, q.in).to(dtype).contiguous();
}

}  // namespace bouquet::gpu

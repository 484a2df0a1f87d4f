// The small per-row steps of a Llama block (RMSNorm, rotary embedding + attention against the
// KV cache, SwiGLU's gate) as plain loops over f32 CPU tensors, for inference.
//
// Why: on a small model the weights of one block are a few MB, and the ~80 libtorch operations a
// block otherwise issues per decode step (each a dispatch, a shape check, an allocation) cost as
// much as reading them: on SmolLM2-135M (30 blocks of width 576, f32) perf put ~37% of a decode
// step outside the matrix products before, ~12% after. Each function here is one call and one
// output allocation.
//
// What they promise: the values Hugging Face's Llama computes (and gpu/llama.cpp's libtorch path),
// equal within f32 rounding (sums in another order). They serve only where `fused_cpu_f32` says
// so: every tensor on the CPU in f32 and no gradient to record; elsewhere the caller uses
// libtorch.
#pragma once

#include "gpu/family.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace bouquet::gpu {

// True when `t` is an f32 CPU tensor and autograd would not record an operation on it.
bool fused_cpu_f32(const at::Tensor& t);

// weight * x / sqrt(mean(x^2) + eps) over the last dimension (Hugging Face's LlamaRMSNorm in f32).
at::Tensor rms_norm_f32(const at::Tensor& x, const at::Tensor& weight, double eps);

// [..., 2 * intermediate] (gate then up) -> [..., intermediate]: silu(gate) * up.
at::Tensor silu_mul_f32(const at::Tensor& gate_up, int64_t intermediate);

struct RopeAttentionShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  const std::vector<double>* inv_freq = nullptr;  // head_dim / 2 rotary inverse frequencies
};

// `qkv` [batch, tokens, (heads + 2 kv_heads) * head_dim] at positions start...: rotates q and k
// (rotate-half convention, angles in double), writes k and v to `cache` at those positions, and
// returns causal grouped-query attention over the cache's positions [0, start + tokens):
// [batch, tokens, heads * head_dim]. The cache must be contiguous f32 [batch, kv_heads, capacity,
// head_dim] with capacity >= start + tokens.
at::Tensor rope_attention_f32(const at::Tensor& qkv, const RopeAttentionShape& shape, int64_t start, KvCache& cache);

}  // namespace bouquet::gpu

// The fused f32 CPU loops of gpu/decode_ops.h against the same formulas written with libtorch in
// f64: RMSNorm, SwiGLU's gate, and rotary + grouped-query attention over a cache filled by a
// prefill and then by single decode steps (as generation calls it).
#include "gpu/decode_ops.h"
#include "gpu/rope.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace bouquet::gpu {
namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(DecodeOps, RmsNormAndSiluGateEqualTheirFormulas) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 3, 40});
  const at::Tensor w = at::randn({40});
  const at::Tensor x64 = x.to(at::kDouble);
  const at::Tensor norm = w.to(at::kDouble) * x64 * at::rsqrt(x64.pow(2).mean(-1, true) + 1e-5);
  EXPECT_LT(max_diff(rms_norm_f32(x, w, 1e-5), norm), 1e-5);
  const at::Tensor gu = at::randn({2, 3, 2 * 24});
  const at::Tensor gu64 = gu.to(at::kDouble);
  const at::Tensor gate = at::silu(gu64.narrow(-1, 0, 24)) * gu64.narrow(-1, 24, 24);
  EXPECT_LT(max_diff(silu_mul_f32(gu, 24), gate), 1e-5);
}

// Rotate-half rope and causal grouped-query attention of all `length` positions at once, in f64.
at::Tensor reference_attention(const at::Tensor& qkv, const std::vector<double>& inv_freq, int64_t heads,
                               int64_t kv_heads, int64_t dim) {
  const at::Tensor x = qkv.to(at::kDouble);
  const int64_t length = x.size(1), half = dim / 2;
  const auto split = [&](int64_t offset, int64_t n) {
    return x.narrow(-1, offset * dim, n * dim).view({1, length, n, dim}).transpose(1, 2);
  };
  const at::Tensor angles =
      at::outer(at::arange(length, at::kDouble), at::tensor(inv_freq, at::TensorOptions().dtype(at::kDouble)));
  const at::Tensor cos = at::cat({angles, angles}, -1).cos(), sin = at::cat({angles, angles}, -1).sin();
  const auto rope = [&](const at::Tensor& t) {
    return t * cos + at::cat({-t.narrow(-1, half, half), t.narrow(-1, 0, half)}, -1) * sin;
  };
  const at::Tensor q = rope(split(0, heads));
  const at::Tensor k = rope(split(heads, kv_heads)).repeat_interleave(heads / kv_heads, 1);
  const at::Tensor v = split(heads + kv_heads, kv_heads).repeat_interleave(heads / kv_heads, 1);
  const at::Tensor future = at::ones({length, length}, at::kBool).triu(1);
  const at::Tensor scores = (at::matmul(q, k.transpose(2, 3)) / std::sqrt(double(dim))).masked_fill(future, -INFINITY);
  return at::matmul(at::softmax(scores, -1), v).transpose(1, 2).reshape({1, length, heads * dim});
}

TEST(DecodeOps, RopeAttentionOverTheCacheEqualsFullCausalAttention) {
  const int64_t heads = 6, kv_heads = 2, dim = 8, prompt = 5, steps = 4, length = prompt + steps;
  const std::vector<double> inv_freq = rope_inverse_frequencies(dim, 10000.0, std::nullopt);
  at::manual_seed(4);
  const at::Tensor qkv = at::randn({1, length, (heads + 2 * kv_heads) * dim});
  KvCache cache{at::zeros({1, kv_heads, length + 3, dim}), at::zeros({1, kv_heads, length + 3, dim})};
  const RopeAttentionShape shape{heads, kv_heads, dim, &inv_freq};
  std::vector<at::Tensor> outputs = {rope_attention_f32(qkv.narrow(1, 0, prompt), shape, 0, cache)};
  for (int64_t p = prompt; p < length; ++p) outputs.push_back(rope_attention_f32(qkv.narrow(1, p, 1), shape, p, cache));
  const at::Tensor expected = reference_attention(qkv, inv_freq, heads, kv_heads, dim);
  EXPECT_LT(max_diff(at::cat(outputs, 1), expected), 1e-5);
}

}  // namespace
}  // namespace bouquet::gpu

// The BLOOM family's two layout rules that a checkpoint does not spell out, exposed so they can be
// checked by hand; the family itself (gpu/bloom.cpp) is reached through the registry (family.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace bouquet::gpu {

// ALiBi's per-head slopes, head 0 first, as BLOOM's training code defines them: with c the
// largest power of two <= heads, the geometric series 2^(-8/c)^1 ... 2^(-8/c)^c, then, when heads
// is not a power of two, the odd powers 1, 3, 5, ... of 2^(-4/c) for the remaining heads.
std::vector<double> alibi_slopes(int64_t heads);

struct SplitQkv {
  at::Tensor query, key, value;  // each [batch, heads, tokens, head_dim]
};

// Splits the output of query_key_value, [batch, tokens, heads * 3 * head_dim], whose features are
// laid out per head as [heads, 3, head_dim] (q, k, v of head 0, then of head 1, ...) — not as
// three [heads * head_dim] runs.
SplitQkv split_fused_qkv(const at::Tensor& fused, int64_t heads, int64_t head_dim);

}  // namespace bouquet::gpu

#include "gpu/decode_ops.h"

#include "core/check.h"
#include "gpu/kernels/matvec.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace bouquet::gpu {
namespace {

bool cpu_f32(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat; }

// Rotate-half rotary embedding of one head (`half` = head_dim / 2) with cos/sin of its angles,
// rounding as libtorch's `x * cos + rotate_half(x) * sin` does (each product, then the sum).
void rotate(const float* in, float* out, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float lo = in[i] * cos[i];
    const float lo_rot = -in[i + half] * sin[i];
    const float hi = in[i + half] * cos[i];
    const float hi_rot = in[i] * sin[i];
    out[i] = lo + lo_rot;
    out[i + half] = hi + hi_rot;
  }
}

// Softmax of `n` scores in place, relative to their maximum.
void softmax(float* scores, int64_t n) {
  const float top = *std::max_element(scores, scores + n);
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - top);
    total += scores[i];
  }
  for (int64_t i = 0; i < n; ++i) scores[i] /= total;
}

}  // namespace

bool fused_cpu_f32(const at::Tensor& t) { return cpu_f32(t) && !(at::GradMode::is_enabled() && t.requires_grad()); }

at::Tensor rms_norm_f32(const at::Tensor& x, const at::Tensor& weight, double eps) {
  BOUQUET_CHECK(cpu_f32(x) && cpu_f32(weight) && weight.dim() == 1 && x.size(-1) == weight.size(0),
                "rms_norm_f32: f32 CPU tensors [..., n] and [n]");
  const at::Tensor in = x.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty_like(in);
  const int64_t n = in.size(-1);
  const int64_t rows = n == 0 ? 0 : in.numel() / n;
  const float* src = in.data_ptr<float>();
  const float* scale = w.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = src + r * n;
    double squares = 0.0;
    for (int64_t i = 0; i < n; ++i) squares += static_cast<double>(row[i]) * row[i];
    const float mean = static_cast<float>(squares / static_cast<double>(n));
    const float inv = 1.0f / std::sqrt(mean + static_cast<float>(eps));
    for (int64_t i = 0; i < n; ++i) dst[r * n + i] = scale[i] * (row[i] * inv);
  }
  return out;
}

at::Tensor silu_mul_f32(const at::Tensor& gate_up, int64_t intermediate) {
  BOUQUET_CHECK(cpu_f32(gate_up) && gate_up.size(-1) == 2 * intermediate, "silu_mul_f32: f32 [..., 2 * intermediate]");
  const at::Tensor in = gate_up.contiguous();
  std::vector<int64_t> shape = in.sizes().vec();
  shape.back() = intermediate;
  at::Tensor out = at::empty(shape, in.options());
  const int64_t rows = intermediate == 0 ? 0 : out.numel() / intermediate;
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = src + r * 2 * intermediate;
    const float* up = gate + intermediate;
    for (int64_t i = 0; i < intermediate; ++i) {
      const float silu = gate[i] / (1.0f + std::exp(-gate[i]));
      dst[r * intermediate + i] = silu * up[i];
    }
  }
  return out;
}

at::Tensor rope_attention_f32(const at::Tensor& qkv, const RopeAttentionShape& shape, int64_t start, KvCache& cache) {
  const int64_t heads = shape.heads, kv_heads = shape.kv_heads, dim = shape.head_dim, half = dim / 2;
  BOUQUET_CHECK(cpu_f32(qkv) && qkv.dim() == 3 && qkv.size(2) == (heads + 2 * kv_heads) * dim,
                "rope_attention_f32: qkv must be f32 [batch, tokens, (heads + 2 kv_heads) * head_dim]");
  BOUQUET_CHECK(
      shape.inv_freq != nullptr && static_cast<int64_t>(shape.inv_freq->size()) == half && heads % kv_heads == 0,
      "rope_attention_f32: inconsistent head shape");
  const int64_t batch = qkv.size(0), tokens = qkv.size(1), length = start + tokens;
  for (const at::Tensor* t : {&cache.key, &cache.value}) {
    BOUQUET_CHECK(cpu_f32(*t) && t->is_contiguous() && t->dim() == 4 && t->size(0) == batch && t->size(1) == kv_heads &&
                      t->size(2) >= length && t->size(3) == dim,
                  "rope_attention_f32: the cache must be contiguous f32 [batch, kv_heads, >= length, head_dim]");
  }
  const at::Tensor in = qkv.contiguous();
  at::Tensor out = at::empty({batch, tokens, heads * dim}, in.options());
  const int64_t width = in.size(2), capacity = cache.key.size(2), group = heads / kv_heads;

  // cos/sin of each new position's angles, computed in double and rounded to f32 as libtorch's
  // rotary path does.
  std::vector<float> cos(tokens * half), sin(tokens * half);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(start + t) * (*shape.inv_freq)[i];
      cos[t * half + i] = static_cast<float>(std::cos(angle));
      sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }

  const float scale = static_cast<float>(std::sqrt(static_cast<double>(dim)));
  const kernels::Isa isa = kernels::detected_isa();
  std::vector<float> queries(group * dim), scores(group * length);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < tokens; ++t) {
      const float* row = in.data_ptr<float>() + (b * tokens + t) * width;
      const float* c = cos.data() + t * half;
      const float* s = sin.data() + t * half;
      for (int64_t g = 0; g < kv_heads; ++g) {
        const int64_t slot = ((b * kv_heads + g) * capacity + start + t) * dim;
        rotate(row + (heads + g) * dim, cache.key.data_ptr<float>() + slot, c, s, half);
        std::copy_n(row + (heads + kv_heads + g) * dim, dim, cache.value.data_ptr<float>() + slot);
      }
    }
    // Queries after every key of this step is in the cache: token t sees positions <= start + t.
    for (int64_t t = 0; t < tokens; ++t) {
      const float* row = in.data_ptr<float>() + (b * tokens + t) * width;
      const int64_t seen = start + t + 1;
      for (int64_t g = 0; g < kv_heads; ++g) {
        for (int64_t j = 0; j < group; ++j) {
          rotate(row + (g * group + j) * dim, queries.data() + j * dim, cos.data() + t * half, sin.data() + t * half,
                 half);
        }
        const float* keys = cache.key.data_ptr<float>() + (b * kv_heads + g) * capacity * dim;
        const float* values = cache.value.data_ptr<float>() + (b * kv_heads + g) * capacity * dim;
        for (int64_t j = 0; j < group; j += kernels::kMatvecRowsMax) {
          kernels::MatvecProblem problem;  // scores[j, p] = q_j . key_p: the keys as a weight matrix
          problem.x = queries.data() + j * dim;
          problem.rows = std::min(kernels::kMatvecRowsMax, group - j);
          problem.in = dim;
          problem.weight = keys;
          problem.out = seen;
          problem.y = scores.data() + j * seen;
          kernels::matvec(isa, problem, 0, seen);
        }
        for (int64_t j = 0; j < group; ++j) {
          float* p = scores.data() + j * seen;
          for (int64_t k = 0; k < seen; ++k) p[k] /= scale;
          softmax(p, seen);
          float* o = out.data_ptr<float>() + (b * tokens + t) * heads * dim + (g * group + j) * dim;
          std::fill_n(o, dim, 0.0f);
          for (int64_t k = 0; k < seen; ++k) {
            const float* v = values + k * dim;
            for (int64_t i = 0; i < dim; ++i) o[i] += p[k] * v[i];
          }
        }
      }
    }
  }
  return out;
}

}  // namespace bouquet::gpu

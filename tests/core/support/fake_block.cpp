#include "tests/core/support/fake_block.h"

#include <bit>

#include "core/check.h"

namespace bouquet::test {
namespace {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Exactly representable in float32: 24 bits over 2^24, centred.
float to_value(uint64_t h) { return static_cast<float>(h >> 40) * 0x1.0p-24f - 0.5f; }

uint64_t hash_vector(const float* v, uint32_t n, uint64_t seed) {
  uint64_t h = seed;
  for (uint32_t i = 0; i < n; ++i) h = mix(h, std::bit_cast<uint32_t>(v[i]));
  return h;
}

}  // namespace

std::vector<float> fake_span_forward(core::BlockSpan span, uint32_t batch, uint32_t tokens, uint32_t hidden,
                                     const std::vector<float>& inputs, FakeCache* cache, uint32_t cache_length) {
  BOUQUET_CHECK(inputs.size() == uint64_t{batch} * tokens * hidden, "fake block: input size");
  std::vector<float> x = inputs, y(inputs.size());
  for (uint32_t b = span.begin; b < span.end; ++b) {
    for (uint32_t r = 0; r < batch; ++r) {
      std::vector<uint64_t> local;
      std::vector<uint64_t>* prefix = &local;
      if (cache) {
        auto& rows = cache->prefix[b];
        if (rows.size() < batch) rows.resize(batch);
        prefix = &rows[r];
        BOUQUET_CHECK(prefix->size() >= cache_length, "fake block: cache shorter than cache_length");
        prefix->resize(cache_length);
      }
      for (uint32_t t = 0; t < tokens; ++t) {
        const float* in = &x[(uint64_t{r} * tokens + t) * hidden];
        const uint64_t previous = prefix->empty() ? mix(b, 0x5eed) : prefix->back();
        const uint64_t h = mix(previous, hash_vector(in, hidden, b));
        prefix->push_back(h);
        float* out = &y[(uint64_t{r} * tokens + t) * hidden];
        for (uint32_t j = 0; j < hidden; ++j) out[j] = to_value(mix(h, j));
      }
    }
    x.swap(y);
  }
  return x;
}

std::vector<float> fake_span_backward(core::BlockSpan span, uint32_t batch, uint32_t tokens, uint32_t hidden,
                                      const std::vector<float>& inputs, const std::vector<float>& grad_outputs) {
  BOUQUET_CHECK(inputs.size() == grad_outputs.size(), "fake backward: sizes differ");
  std::vector<std::vector<float>> block_inputs{inputs};
  for (uint32_t b = span.begin; b + 1 < span.end; ++b) {
    block_inputs.push_back(fake_span_forward({b, b + 1}, batch, tokens, hidden, block_inputs.back(), nullptr, 0));
  }
  // Row by row, as sequences are independent: a batch split into sub-batches gets the same values.
  std::vector<float> grad = grad_outputs;
  const uint64_t row = uint64_t{tokens} * hidden;
  for (uint32_t b = span.end; b-- > span.begin;) {
    const std::vector<float>& in = block_inputs[b - span.begin];
    for (uint32_t r = 0; r < batch; ++r) {
      const uint64_t h = hash_vector(&in[r * row], static_cast<uint32_t>(row), mix(b, 0xbacc));
      for (uint64_t i = 0; i < row; ++i) {
        float& g = grad[r * row + i];
        g = to_value(mix(h, std::bit_cast<uint32_t>(g) ^ (i << 32)));
      }
    }
  }
  return grad;
}

core::ComputeOutput fake_compute(const core::ComputeRequest& request, uint32_t hidden, FakeCache* cache) {
  const auto inputs = request.inputs.to_floats();
  std::vector<float> values;
  if (request.kind == core::ComputeKind::backward) {
    values = fake_span_backward(request.span, request.batch, request.new_tokens, hidden, inputs,
                                request.grad_outputs->to_floats());
  } else {
    values = fake_span_forward(request.span, request.batch, request.new_tokens, hidden, inputs,
                               request.kind == core::ComputeKind::inference ? cache : nullptr, request.cache_length);
  }
  core::ComputeOutput out;
  out.outputs =
      core::make_activation(request.inputs.shape, std::move(values), request.inputs.dtype, request.output_compression);
  return out;
}

std::vector<float> fake_prompt(uint64_t seed, uint32_t batch, uint32_t tokens, uint32_t hidden) {
  std::vector<float> v(uint64_t{batch} * tokens * hidden);
  for (size_t i = 0; i < v.size(); ++i) v[i] = to_value(mix(seed, i));
  return v;
}

std::vector<float> fake_next_input(const std::vector<float>& last_output, uint32_t batch, uint32_t tokens,
                                   uint32_t hidden) {
  BOUQUET_CHECK(last_output.size() == uint64_t{batch} * tokens * hidden, "fake next input: size");
  std::vector<float> next(uint64_t{batch} * hidden);
  for (uint32_t r = 0; r < batch; ++r) {
    // "Sample" from the last position of each sequence only, as an LM head would.
    const float* last = &last_output[(uint64_t{r} * tokens + tokens - 1) * hidden];
    const uint64_t token = hash_vector(last, hidden, 0x70c3) % 50000;  // a vocabulary of 50k
    for (uint32_t j = 0; j < hidden; ++j) next[uint64_t{r} * hidden + j] = to_value(mix(token, j));
  }
  return next;
}

}  // namespace bouquet::test

#include "gpu/kernels/nf4_tables.h"

#include "core/nf4_layout.h"

#include <algorithm>
#include <array>
#include <vector>

namespace bouquet::gpu::kernels {
namespace {

// torch.linspace(0.1, 1, n) in f32, then the midpoints of neighbours, as bitsandbytes computes
// them (the values only need to match between quantizing and reading, both here).
std::array<float, 256> make_dynamic_code() {
  std::vector<float> data;
  constexpr int kExponentBits = 7;
  for (int i = 0; i < kExponentBits; ++i) {
    const int fraction_items = (1 << i) + 1;
    float decade = 1.0f;
    for (int k = 0; k < kExponentBits - 1 - i; ++k) decade /= 10.0f;
    for (int k = 0; k + 1 < fraction_items; ++k) {
      const float step = 0.9f / static_cast<float>(fraction_items - 1);
      const float lo = 0.1f + step * static_cast<float>(k);
      const float hi = 0.1f + step * static_cast<float>(k + 1);
      const float mean = (lo + hi) / 2.0f;
      data.push_back(decade * mean);
      data.push_back(-decade * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::array<float, 256> code{};
  std::copy(data.begin(), data.end(), code.begin());
  std::sort(code.begin(), code.end());
  return code;
}

}  // namespace

const float* dynamic_code_8bit() {
  static const std::array<float, 256> code = make_dynamic_code();
  return code.data();
}

float Nf4Absmax::of_block(int64_t block) const {
  if (absmax != nullptr) return absmax[block];
  return dynamic_code_8bit()[codes[block]] * group_scales[block / core::kNf4AbsmaxGroupBlocks] + offset;
}

const float* Nf4Absmax::blocks(int64_t first, int64_t count, float* scratch) const {
  if (absmax != nullptr) return absmax + first;
  const float* code = dynamic_code_8bit();
  for (int64_t k = 0; k < count; ++k) {
    const int64_t block = first + k;
    scratch[k] = code[codes[block]] * group_scales[block / core::kNf4AbsmaxGroupBlocks] + offset;
  }
  return scratch;
}

}  // namespace bouquet::gpu::kernels

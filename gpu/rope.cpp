#include "gpu/rope.h"

#include "core/check.h"

#include <cmath>
#include <numbers>

namespace bouquet::gpu {

std::vector<double> rope_inverse_frequencies(int64_t head_dim, double theta,
                                             const std::optional<RopeScaling>& scaling) {
  BOUQUET_CHECK(head_dim > 0 && head_dim % 2 == 0, "RoPE needs an even head_dim");
  std::vector<double> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  }
  if (!scaling) return inv;
  const double old_context = static_cast<double>(scaling->original_max_position_embeddings);
  const double low_freq_wavelen = old_context / scaling->low_freq_factor;
  const double high_freq_wavelen = old_context / scaling->high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_freq_wavelen) continue;
    if (wavelen > low_freq_wavelen) {
      f /= scaling->factor;
      continue;
    }
    const double smooth =
        (old_context / wavelen - scaling->low_freq_factor) / (scaling->high_freq_factor - scaling->low_freq_factor);
    f = (1.0 - smooth) * f / scaling->factor + smooth * f;
  }
  return inv;
}

}  // namespace bouquet::gpu

// Rotary position embeddings' inverse frequencies, shared by the families that use RoPE.
#pragma once

#include "gpu/model_config.h"

#include <optional>
#include <vector>

namespace bouquet::gpu {

// theta^(-2i/head_dim) for i in [0, head_dim/2), then Llama-3's frequency-dependent scaling when
// `scaling` is given: wavelengths shorter than original_max_position_embeddings/high_freq_factor
// are kept, those longer than original_max_position_embeddings/low_freq_factor are divided by
// `factor`, and those in between are blended smoothly. Computed in double.
std::vector<double> rope_inverse_frequencies(int64_t head_dim, double theta, const std::optional<RopeScaling>& scaling);

}  // namespace bouquet::gpu

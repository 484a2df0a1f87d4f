// Picks the next token from logits. Greedy (the arg-max, lowest id on a tie) unless a temperature
// is given; then, in Hugging Face's order: repetition penalty, temperature, top-k, top-p, and a
// draw from the seeded core::Rng — so a seed reproduces a generation on any machine. The
// repetition penalty also applies to greedy choice.
#pragma once

#include "core/rng.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <span>
#include <vector>

namespace bouquet::gpu {

struct SamplingConfig {
  double temperature = 0.0;         // 0: greedy
  int64_t top_k = 0;                // 0: no limit
  double top_p = 1.0;               // 1: no nucleus cut
  double repetition_penalty = 1.0;  // 1: none; > 1 discourages tokens already in the sequence
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws InputError for a negative temperature or top_k, a top_p outside (0, 1], or a
  // repetition penalty that is not positive.
  explicit Sampler(const SamplingConfig& config);

  // `logits` over the vocabulary; `history` the ids so far (prompt and generated), which the
  // repetition penalty looks at.
  TokenId next(std::span<const float> logits, std::span<const TokenId> history);
  bool greedy() const { return config_.temperature == 0.0; }

 private:
  SamplingConfig config_;
  core::Rng rng_;
};

}  // namespace bouquet::gpu

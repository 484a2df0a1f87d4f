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
  // OpenAI's penalties over the tokens this sampler chose so far (apply_penalties); 0: none.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
};

// OpenAI's penalties on `scores`: minus frequency_penalty per earlier occurrence of a token in
// `generated`, minus presence_penalty once if it occurred at all. Ids outside the vocabulary are
// ignored.
template <class Score>
void apply_penalties(std::vector<Score>& scores, std::span<const TokenId> generated, double presence_penalty,
                     double frequency_penalty) {
  if (presence_penalty == 0 && frequency_penalty == 0) return;
  std::vector<int64_t> counts(scores.size(), 0);
  for (TokenId id : generated) {
    if (id >= 0 && static_cast<size_t>(id) < scores.size()) ++counts[static_cast<size_t>(id)];
  }
  for (size_t id = 0; id < scores.size(); ++id) {
    if (counts[id] == 0) continue;
    scores[id] -= static_cast<Score>(frequency_penalty * static_cast<double>(counts[id]) + presence_penalty);
  }
}

class Sampler {
 public:
  // Throws InputError for a negative temperature or top_k, a top_p outside (0, 1], or a
  // repetition penalty that is not positive.
  explicit Sampler(const SamplingConfig& config);

  // `logits` over the vocabulary; `history` the ids so far (prompt and generated), which the
  // repetition penalty looks at (the presence and frequency penalties look at what this sampler
  // chose).
  TokenId next(std::span<const float> logits, std::span<const TokenId> history);
  bool greedy() const { return config_.temperature == 0.0; }

 private:
  TokenId pick(std::span<const float> logits, std::span<const TokenId> history);

  SamplingConfig config_;
  core::Rng rng_;
  std::vector<TokenId> chosen_;
};

}  // namespace bouquet::gpu

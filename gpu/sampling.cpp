#include "gpu/sampling.h"

#include "core/check.h"
#include "gpu/errors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bouquet::gpu {

Sampler::Sampler(const SamplingConfig& config) : config_(config), rng_(config.seed) {
  if (!(config.temperature >= 0.0)) {
    throw InputError(fmt::format("temperature must be >= 0 (is {})", config.temperature));
  }
  if (config.top_k < 0) throw InputError(fmt::format("top-k must be >= 0 (is {})", config.top_k));
  if (!(config.top_p > 0.0 && config.top_p <= 1.0)) {
    throw InputError(fmt::format("top-p must be in (0, 1] (is {})", config.top_p));
  }
  if (!(config.repetition_penalty > 0.0)) {
    throw InputError(fmt::format("repetition penalty must be > 0 (is {})", config.repetition_penalty));
  }
}

TokenId Sampler::next(std::span<const float> logits, std::span<const TokenId> history) {
  const TokenId id = pick(logits, history);
  chosen_.push_back(id);
  return id;
}

TokenId Sampler::pick(std::span<const float> logits, std::span<const TokenId> history) {
  BOUQUET_CHECK(!logits.empty(), "Sampler::next needs logits");
  std::vector<double> scores(logits.begin(), logits.end());
  const auto vocab = static_cast<TokenId>(scores.size());
  if (config_.repetition_penalty != 1.0) {
    std::vector<bool> seen(scores.size(), false);
    for (TokenId id : history) {
      if (id < 0 || id >= vocab || seen[id]) continue;
      seen[id] = true;
      double& s = scores[id];
      s = s > 0 ? s / config_.repetition_penalty : s * config_.repetition_penalty;
    }
  }
  apply_penalties(scores, chosen_, config_.presence_penalty, config_.frequency_penalty);
  // Candidates best first; ties broken by the lower id so the order never depends on the sort.
  std::vector<TokenId> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  if (greedy()) {
    return *std::max_element(order.begin(), order.end(), [&](TokenId a, TokenId b) {
      return scores[a] < scores[b] || (scores[a] == scores[b] && a > b);
    });
  }
  std::sort(order.begin(), order.end(),
            [&](TokenId a, TokenId b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); });
  if (config_.top_k > 0 && config_.top_k < vocab) order.resize(config_.top_k);
  // Softmax of the scaled scores over the kept candidates, relative to the best for stability.
  const double best = scores[order[0]] / config_.temperature;
  std::vector<double> probs;
  probs.reserve(order.size());
  double total = 0.0;
  for (TokenId id : order) {
    const double p = std::exp(scores[id] / config_.temperature - best);
    probs.push_back(p);
    total += p;
  }
  if (config_.top_p < 1.0) {
    // Keep the smallest prefix whose probability reaches top_p (at least one token).
    double cumulative = 0.0;
    size_t keep = 0;
    while (keep < probs.size()) {
      cumulative += probs[keep++] / total;
      if (cumulative >= config_.top_p) break;
    }
    order.resize(keep);
    probs.resize(keep);
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  double draw = rng_.uniform01() * total;
  for (size_t i = 0; i < order.size(); ++i) {
    draw -= probs[i];
    if (draw < 0.0) return order[i];
  }
  return order.back();  // rounding left a sliver past the last candidate
}

}  // namespace bouquet::gpu

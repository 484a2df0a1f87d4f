// The sampler: greedy arg-max, seeded draws that follow the softmax, and the top-k, top-p and
// repetition-penalty filters as Hugging Face defines them.
#include "gpu/sampling.h"
#include "gpu/errors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace bouquet::gpu {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f};

std::vector<TokenId> draws(const SamplingConfig& config, int count, const std::vector<float>& logits = kLogits) {
  Sampler sampler(config);
  std::vector<TokenId> out;
  for (int i = 0; i < count; ++i) out.push_back(sampler.next(logits, {}));
  return out;
}

TEST(Sampler, GreedyTakesTheArgmaxLowestIdOnTies) { EXPECT_EQ(draws({}, 3), (std::vector<TokenId>{1, 1, 1})); }

TEST(Sampler, SameSeedSameDrawsOtherSeedOtherDraws) {
  const SamplingConfig a{.temperature = 1.0, .seed = 123};
  SamplingConfig b = a;
  b.seed = 124;
  EXPECT_EQ(draws(a, 50), draws(a, 50));
  EXPECT_NE(draws(a, 50), draws(b, 50));
}

TEST(Sampler, DrawFrequenciesFollowTheSoftmax) {
  const uint64_t seed = 2024;
  SCOPED_TRACE("seed " + std::to_string(seed) + "; rerun this test to reproduce");
  const SamplingConfig config{.temperature = 2.0, .seed = seed};
  const int n = 40000;
  std::map<TokenId, int> counts;
  for (TokenId id : draws(config, n)) ++counts[id];
  double total = 0;
  for (float l : kLogits) total += std::exp(l / 2.0);
  for (size_t id = 0; id < kLogits.size(); ++id) {
    const double p = std::exp(kLogits[id] / 2.0) / total;
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(counts[id], n * p, 5 * sd) << "token " << id;
  }
}

TEST(Sampler, TopKKeepsOnlyTheBestK) {
  for (TokenId id : draws({.temperature = 5.0, .top_k = 2, .seed = 1}, 300)) {
    EXPECT_TRUE(id == 1 || id == 4) << id;
  }
  EXPECT_EQ(draws({.temperature = 5.0, .top_k = 1, .seed = 1}, 20), draws({}, 20));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // Probabilities at temperature 1: ids 1 and 4 hold 0.356 each, id 2 0.216; top_p 0.6 needs
  // exactly ids 1 and 4 (0.712 together), top_p 0.75 adds id 2.
  std::map<TokenId, int> seen;
  for (TokenId id : draws({.temperature = 1.0, .top_p = 0.6, .seed = 3}, 500)) ++seen[id];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[4], 0);
  seen.clear();
  for (TokenId id : draws({.temperature = 1.0, .top_p = 0.75, .seed = 3}, 500)) ++seen[id];
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_GT(seen[2], 0);
  EXPECT_EQ(draws({.temperature = 1.0, .top_p = 1e-6, .seed = 3}, 10), draws({}, 10));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  Sampler greedy({.repetition_penalty = 1.5});
  const std::vector<TokenId> history = {1, 4};
  // 3.0 / 1.5 = 2.0 < 2.5: token 2 wins once 1 and 4 were seen.
  EXPECT_EQ(greedy.next(kLogits, history), 2);
  // A negative logit is pushed further down: -0.9 * 1.5 < -1.0.
  const std::vector<float> negative = {-1.0f, -0.9f};
  EXPECT_EQ(greedy.next(negative, {}), 1);
  EXPECT_EQ(greedy.next(negative, std::vector<TokenId>{1}), 0);
}

TEST(Sampler, RejectsNonsenseSettings) {
  EXPECT_THROW(Sampler({.temperature = -1}), InputError);
  EXPECT_THROW(Sampler({.top_k = -2}), InputError);
  EXPECT_THROW(Sampler({.top_p = 0.0}), InputError);
  EXPECT_THROW(Sampler({.top_p = 1.5}), InputError);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0}), InputError);
}

}  // namespace
}  // namespace bouquet::gpu

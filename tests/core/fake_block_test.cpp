// The virtual swarm's fake block is only useful if cache and replay mistakes change its output.
#include "tests/core/support/fake_block.h"

#include <gtest/gtest.h>

namespace bouquet::test {
namespace {

constexpr uint32_t kHidden = 4;
const core::BlockSpan kSpan{0, 3};

std::vector<float> token(float v) { return std::vector<float>(kHidden, v); }

TEST(FakeBlock, CachedStepsEqualOneLongForward) {
  std::vector<float> all;
  for (float v : {0.1f, 0.2f, 0.3f, 0.4f}) {
    auto t = token(v);
    all.insert(all.end(), t.begin(), t.end());
  }
  const auto whole = fake_span_forward(kSpan, 1, 4, kHidden, all, nullptr, 0);
  FakeCache cache;
  auto first = fake_span_forward(kSpan, 1, 3, kHidden, {all.begin(), all.begin() + 3 * kHidden}, &cache, 0);
  auto last = fake_span_forward(kSpan, 1, 1, kHidden, token(0.4f), &cache, 3);
  EXPECT_EQ(std::vector<float>(whole.begin(), whole.begin() + 3 * kHidden), first);
  EXPECT_EQ(std::vector<float>(whole.begin() + 3 * kHidden, whole.end()), last);
}

TEST(FakeBlock, EveryCachedPositionAndTheBlockIndexMatter) {
  auto run = [](std::vector<float> p0, std::vector<float> p1, core::BlockSpan span, bool lose_cache) {
    FakeCache cache;
    fake_span_forward(span, 1, 1, kHidden, p0, &cache, 0);
    fake_span_forward(span, 1, 1, kHidden, p1, &cache, 1);
    if (lose_cache) cache = FakeCache{};
    // The third position: with a lost cache the server can only start over at position 0.
    return fake_span_forward(span, 1, 1, kHidden, token(0.3f), &cache, lose_cache ? 0 : 2);
  };
  const auto right = run(token(0.1f), token(0.2f), kSpan, false);
  EXPECT_NE(run(token(0.15f), token(0.2f), kSpan, false), right) << "first position ignored";
  EXPECT_NE(run(token(0.2f), token(0.1f), kSpan, false), right) << "order ignored";
  EXPECT_NE(run(token(0.1f), token(0.2f), {1, 4}, false), right) << "block index ignored";
  EXPECT_NE(run(token(0.1f), token(0.2f), kSpan, true), right) << "a lost cache went unnoticed";
}

TEST(FakeBlock, RewindRecomputesFromTheTruncatedCache) {
  FakeCache a, b;
  fake_span_forward(kSpan, 1, 1, kHidden, token(0.1f), &a, 0);
  fake_span_forward(kSpan, 1, 1, kHidden, token(0.9f), &a, 1);  // then rewound over
  const auto rewound = fake_span_forward(kSpan, 1, 1, kHidden, token(0.2f), &a, 1);
  fake_span_forward(kSpan, 1, 1, kHidden, token(0.1f), &b, 0);
  EXPECT_EQ(fake_span_forward(kSpan, 1, 1, kHidden, token(0.2f), &b, 1), rewound);
}

}  // namespace
}  // namespace bouquet::test

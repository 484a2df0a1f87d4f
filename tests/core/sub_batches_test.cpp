// A pass split into sub-batches: whole sequences, under the position cap, nothing lost.
#include "core/sub_batches.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>

namespace bouquet::core {
namespace {

using ::testing::ElementsAre;

TEST(SplitBatch, SixtyFourSequencesOf128PositionsGoOutAsEightOf1024) {
  EXPECT_THAT(split_batch(64, 128, kSubBatchTokensMax), ElementsAre(8, 8, 8, 8, 8, 8, 8, 8));
}

TEST(SplitBatch, TheLastSubBatchTakesWhatIsLeft) { EXPECT_THAT(split_batch(10, 256, 1024), ElementsAre(4, 4, 2)); }

TEST(SplitBatch, ASequenceLongerThanTheCapStillGoesWhole) {
  EXPECT_THAT(split_batch(3, 2048, 1024), ElementsAre(1, 1, 1));
}

TEST(SplitBatch, NoCapMeansOneRequest) {
  EXPECT_THAT(split_batch(64, 128, 0), ElementsAre(64));
  EXPECT_THAT(split_batch(1, 128, 1024), ElementsAre(1));
}

TEST(SplitBatch, SizesAlwaysSumToTheBatchAndRespectTheCap) {
  for (uint32_t batch = 1; batch <= 70; ++batch) {
    for (uint32_t tokens : {1u, 7u, 128u, 1000u, 5000u}) {
      const auto sizes = split_batch(batch, tokens, 1024);
      EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0u), batch);
      for (uint32_t size : sizes) EXPECT_TRUE(size == 1 || size * tokens <= 1024) << batch << " " << tokens;
    }
  }
}

}  // namespace
}  // namespace bouquet::core

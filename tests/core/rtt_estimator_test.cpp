#include "core/rtt_estimator.h"

#include <gtest/gtest.h>

namespace bouquet::core {
namespace {

TEST(RttEstimator, FirstSampleIsTakenThenLaterOnesAreSmoothed) {
  RttEstimator rtt(RttEstimatorConfig{0.25, 0.1, 10});
  const PeerId a{1}, b{2};
  EXPECT_EQ(rtt.rtt_s(a), 0.1) << "never measured: the default";
  EXPECT_FALSE(rtt.smoothed_rtt_s(a).has_value());
  rtt.observe(a, 0.04);
  EXPECT_EQ(rtt.rtt_s(a), 0.04);
  rtt.observe(a, 0.08);
  EXPECT_DOUBLE_EQ(rtt.rtt_s(a), 0.04 + 0.25 * 0.04);
  EXPECT_EQ(rtt.samples(a), 2u);
  EXPECT_EQ(rtt.rtt_s(b), 0.1) << "peers do not mix";
}

TEST(RttEstimator, OneOutlierMovesTheEstimateOnlyAFractionAndFailuresPriceAPeerOut) {
  RttEstimator rtt;  // smoothing 1/8
  const PeerId a{1};
  for (int i = 0; i < 20; ++i) rtt.observe(a, 0.05);
  rtt.observe(a, 1.05);
  EXPECT_NEAR(rtt.rtt_s(a), 0.05 + 1.0 / 8, 1e-12);
  for (int i = 0; i < 40; ++i) rtt.observe_failure(a);
  EXPECT_GT(rtt.rtt_s(a), 9.9);
  rtt.forget(a);
  EXPECT_EQ(rtt.rtt_s(a), rtt.config().default_rtt_s);
}

}  // namespace
}  // namespace bouquet::core

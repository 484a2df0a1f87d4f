// The interval a sweep's report quotes: Student t quantiles, means that ignore runs without a
// value, and sums that do not depend on the order runs finished in.
#include "sim/sweep/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace bouquet::sim::sweep {
namespace {

TEST(SweepStats, StudentQuantilesMatchTheTables) {
  // Two-sided 95% critical values from any statistics table.
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.706, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.975, 2), 4.303, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.975, 4), 2.776, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.975, 10), 2.228, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.975, 30), 2.042, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.975, 1e6), 1.960, 1e-3);
  EXPECT_NEAR(student_t_quantile(0.025, 4), -2.776, 1e-3);
  EXPECT_NEAR(student_t_cdf(0, 3), 0.5, 1e-12);
}

TEST(SweepStats, IncompleteBetaMatchesClosedForms) {
  // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b.
  EXPECT_NEAR(incomplete_beta(1, 1, 0.3), 0.3, 1e-12);
  EXPECT_NEAR(incomplete_beta(3, 1, 0.6), std::pow(0.6, 3), 1e-12);
  EXPECT_NEAR(incomplete_beta(1, 4, 0.2), 1 - std::pow(0.8, 4), 1e-12);
}

TEST(SweepStats, MeanAndIntervalOverSeeds) {
  const std::vector<double> values = {1, 2, 3, 4, 5};
  const Summary s = summarize(values);
  EXPECT_EQ(s.n, 5u);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  // s = sqrt(2.5); half-width = t(0.975, 4) * s / sqrt(5) = 2.7764 * 0.70711 = 1.9632.
  ASSERT_TRUE(s.ci95_low && s.ci95_high);
  EXPECT_NEAR(*s.ci95_high - 3, 1.9632, 1e-4);
  EXPECT_NEAR(3 - *s.ci95_low, 1.9632, 1e-4);
}

TEST(SweepStats, RunsWithoutAValueAreLeftOut) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> values = {nan, 4, nan, 6};
  const Summary s = summarize(values);
  EXPECT_EQ(s.n, 2u);
  EXPECT_DOUBLE_EQ(s.mean, 5);
  ASSERT_TRUE(s.ci95_high);
  // s = sqrt(2); t(0.975, 1) = 12.706: half = 12.706 * 1.4142 / 1.4142.
  EXPECT_NEAR(*s.ci95_high - 5, 12.706, 1e-3);

  const std::vector<double> one = {nan, 7};
  EXPECT_FALSE(summarize(one).ci95_low.has_value());
  const std::vector<double> none = {nan};
  EXPECT_EQ(summarize(none).n, 0u);
  EXPECT_TRUE(std::isnan(summarize(none).mean));
}

TEST(SweepStats, TheOrderRunsFinishedInChangesNoDigit) {
  const std::vector<double> a = {0.1, 1e8, 0.2, 0.3, 3.7, 1e-9};
  const std::vector<double> b = {3.7, 0.3, 1e-9, 1e8, 0.1, 0.2};
  const Summary sa = summarize(a);
  const Summary sb = summarize(b);
  EXPECT_EQ(sa.mean, sb.mean);
  EXPECT_EQ(*sa.ci95_low, *sb.ci95_low);
}

}  // namespace
}  // namespace bouquet::sim::sweep

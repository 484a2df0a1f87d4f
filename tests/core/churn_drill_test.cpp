// Churn drills (support/churn_drill.h): balanced servers crash, stop, join and move while
// generations and fine-tuning passes run; outputs stay exact, and once the faults stop the swarm
// covers the model again and serves everyone.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "tests/core/support/churn_drill.h"
#include "tests/core/support/seed.h"

namespace bouquet::test {
namespace {

void print(const ChurnStats& s) {
  fmt::print(
      "{} drills: {} crashes, {} stops, {} joins, {} moves; {} generations ({} failed during faults, {} hops "
      "replaced), {} passes ({} failed during faults, {} hops replaced)\n",
      s.drills, s.crashes, s.stops, s.joins, s.moves, s.generations, s.generations_failed, s.generation_recoveries,
      s.passes, s.passes_failed, s.pass_recoveries);
}

TEST(ChurnDrill, TwoHundredDrillsStaySafeUnderFaultsAndServeEveryoneOnceTheyStop) {
  const uint64_t seed = test_seed(9000);
  ChurnStats stats;
  run_churn_drills(seed, 200, stats);
  print(stats);
  if (stats.drills < 200) return;  // BOUQUET_DRILLS asked for a few
  // The drills must really exercise what they claim to.
  EXPECT_GT(stats.moves, 20u);
  EXPECT_GT(stats.generation_recoveries, 100u);
  EXPECT_GT(stats.pass_recoveries, 20u);
  EXPECT_GT(stats.crashes + stats.stops, 100u);
}

}  // namespace
}  // namespace bouquet::test

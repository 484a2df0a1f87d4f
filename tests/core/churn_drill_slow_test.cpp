// The churn drills of churn_drill_test.cpp, fifteen times over (label `slow`).
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "tests/core/support/churn_drill.h"
#include "tests/core/support/seed.h"

namespace bouquet::test {
namespace {

TEST(ChurnDrillSlow, ThreeThousandDrillsStaySafeUnderFaultsAndServeEveryoneOnceTheyStop) {
  const uint64_t seed = test_seed(90000);
  ChurnStats s;
  run_churn_drills(seed, 3000, s);
  fmt::print("{} drills: {} crashes, {} stops, {} joins, {} moves; {} generations ({} failed), {} passes ({} failed)\n",
             s.drills, s.crashes, s.stops, s.joins, s.moves, s.generations, s.generations_failed, s.passes,
             s.passes_failed);
}

}  // namespace
}  // namespace bouquet::test

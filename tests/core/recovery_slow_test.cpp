// The fault drills of recovery_test.cpp, ten times over (label `slow`).
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "tests/core/support/fault_drill.h"
#include "tests/core/support/seed.h"

namespace bouquet::test {
namespace {

using core::RecoveryPolicy;

TEST(RecoverySlow, TenThousandFaultDrillsPerPolicyEndWithTheFaultFreeOutput) {
  const uint64_t seed = test_seed(70000);
  for (RecoveryPolicy policy : {RecoveryPolicy::replay, RecoveryPolicy::restart, RecoveryPolicy::cacheless,
                                RecoveryPolicy::restart_from_scratch}) {
    DrillStats stats;
    run_fault_drills(seed, 10000, policy, stats);
    fmt::print("{}: {} drills, {} faults, {} recoveries, {} replacements that failed too\n", to_string(policy),
               stats.drills, stats.faults, stats.recoveries, stats.replacements_failed);
  }
}

}  // namespace
}  // namespace bouquet::test

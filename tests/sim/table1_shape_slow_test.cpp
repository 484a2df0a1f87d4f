// Table 1's shape with the petals profile, as a user of `bouquet sim` would read it: at p = 1e-2
// a 1024-token generation still finishes under Algorithm 1's replay, a restart from scratch does
// not finish within the hour, and cache-less generation is flat in p. Multi-process (each row runs
// in its own simulation process), so labelled slow.
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace bouquet::sim {
namespace {

double row_figure(const ScenarioFile& file, const std::string& row) {
  for (size_t i = 0; i < file.rows.size(); ++i) {
    if (file.rows[i].name == row) return simulate_isolated(file.row_scenarios[i]).metric(file.rows[i].metric);
  }
  ADD_FAILURE() << "no row " << row;
  return std::nan("");
}

TEST(Table1Shape, ReplayFinishesRestartDoesNotAndCachelessIsFlatInP) {
  const std::string path = std::string(BOUQUET_SOURCE_DIR) + "/scenarios/bloom7b1-faults.yaml";
  const ScenarioFile file = load_scenario_file(path, {});
  fmt::print("seed {}; reproduce with: bouquet sim scenarios/bloom7b1-faults.yaml --seed {}\n", file.base.seed,
             file.base.seed);
  const double replay = row_figure(file, "replay-p1e-2-seq1024");
  EXPECT_GT(replay, 1.0);                                              // usable: more than a step a second
  EXPECT_TRUE(std::isnan(row_figure(file, "restart-p1e-2-seq1024")));  // did not finish
  const double flat = row_figure(file, "cacheless-p0-seq1024");
  const double failing = row_figure(file, "cacheless-p1e-2-seq1024");
  EXPECT_NEAR(failing / flat, 1.0, 0.05);
  EXPECT_GT(replay, failing);  // replay beats re-sending the prefix every step even at p = 1e-2
}

}  // namespace
}  // namespace bouquet::sim

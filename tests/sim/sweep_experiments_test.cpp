// Every experiment under experiments/ still loads: its base scenario, every axis value and every
// point pass the scenario loader of this build, so a change of the scenario schema cannot leave
// a committed experiment that fails only when someone runs it.
#include "sim/sweep/experiment.h"
#include "sim/yaml_fields.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

namespace bouquet::sim::sweep {
namespace {

namespace fs = std::filesystem;

TEST(SweepExperiments, EveryCommittedExperimentLoads) {
  const fs::path dir = fs::path(BOUQUET_SOURCE_DIR) / "experiments";
  size_t experiments = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    // Base scenarios sit beside the experiments; experiments are the files with seeds.
    const YAML::Node& top = YAML::LoadFile(entry.path().string());
    if (!top["seeds"]) continue;
    ++experiments;
    try {
      const Experiment e = load_experiment_file(entry.path().string());
      EXPECT_FALSE(expand_points(e).empty()) << entry.path();
    } catch (const ScenarioError& error) {
      ADD_FAILURE() << error.what();
    }
  }
  EXPECT_GE(experiments, 2u) << "experiments/ holds at least the churn and balancing experiments";
}

}  // namespace
}  // namespace bouquet::sim::sweep

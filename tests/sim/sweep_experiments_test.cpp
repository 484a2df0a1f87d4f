// Every experiment under experiments/ still loads: its base scenario, every axis value and every
// point pass the scenario loader of this build, so a change of the scenario schema cannot leave
// a committed experiment that fails only when someone runs it.
#include "sim/sweep/experiment.h"
#include "sim/yaml_fields.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A committed report is the output of an experiment as it stands: changing an experiment file
// without running it again (or deleting it) leaves a report that answers another question.
TEST(SweepExperiments, EveryCommittedReportComesFromACommittedExperiment) {
  const fs::path dir = fs::path(BOUQUET_SOURCE_DIR) / "experiments";
  size_t reports = 0;
  for (const auto& entry : fs::directory_iterator(dir / "results")) {
    if (!entry.is_directory()) continue;
    ++reports;
    const fs::path copy = entry.path() / "experiment.yaml";
    ASSERT_TRUE(fs::exists(copy)) << copy;
    EXPECT_TRUE(fs::exists(entry.path() / "report.md")) << entry.path();
    const std::string ran = read_all(copy);
    bool found = false;
    for (const auto& experiment : fs::directory_iterator(dir)) {
      if (experiment.path().extension() == ".yaml" && read_all(experiment.path()) == ran) found = true;
    }
    EXPECT_TRUE(found) << entry.path() << " was made by an experiment that experiments/ no longer holds as it "
                       << "ran: run it again (experiments/README.md says how)";
  }
  EXPECT_GE(reports, 3u) << "the churn, churn-uneven and balancing reports are committed";
}

}  // namespace
}  // namespace bouquet::sim::sweep

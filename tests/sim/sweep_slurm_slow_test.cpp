// `bouquet sweep --executor slurm` against a real one-node Slurm cluster that the test starts on
// loopback (tests/sim/support/slurm_cluster.sh: munged, slurmctld and slurmd from Debian's packages,
// everything in a temporary folder): the same grid run locally and as a job array gives the same
// rows, failures included; --resume submits only the runs without results; a task that ends without
// a result is a failed row naming the task's state and log.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/sim/support/tiny_scenario.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Output {
  int status = 0;
  std::string text;
};

Output shell(const std::string& command) {
  Output out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.text.append(buffer, n);
  out.status = WEXITSTATUS(::pclose(pipe));
  return out;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The lines of a runs.csv without its last column (wall time).
std::vector<std::string> rows_without_wall(const fs::path& csv) {
  std::vector<std::string> rows;
  std::istringstream lines(read(csv));
  for (std::string line; std::getline(lines, line);) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

const fs::path kCluster = fs::temp_directory_path() / fmt::format("bouquet-slurm-{}", ::getpid());
const std::string kClusterScript = std::string(BOUQUET_SOURCE_DIR) + "/tests/sim/support/slurm_cluster.sh";

class SlurmSweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const Output started = shell(fmt::format("bash {} start {}", kClusterScript, kCluster.string()));
    if (started.status == 77) {
      skip_reason_ = new std::string(started.text);
      return;
    }
    ASSERT_EQ(started.status, 0) << started.text;
    ::setenv("SLURM_CONF", (kCluster / "slurm.conf").c_str(), 1);
  }
  static void TearDownTestSuite() {
    shell(fmt::format("bash {} stop {}", kClusterScript, kCluster.string()));
    fs::remove_all(kCluster);
  }

  void SetUp() override {
    if (skip_reason_) GTEST_SKIP() << "no Slurm cluster here: " << *skip_reason_;
    dir_ = fs::temp_directory_path() / fmt::format("bouquet-slurm-sweep-{}-{}", ::getpid(),
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "tiny.yaml") << bouquet::sim::testing::tiny_sweep_scenario(
        63, "churn: {activation_failure_probability: 0.02}\npolicies: {ban_base_s: 0}\n");
    // Bouquet, except that seed 13 fails, seed 14 hangs past the time limit and seed 15's Slurm
    // task is cancelled under it, as a scheduler or an administrator might.
    wrapper_ = dir_ / "flaky-bouquet.sh";
    std::ofstream(wrapper_) << fmt::format(R"(#!/bin/sh
case " $* " in
  *" --seed 13 "*) echo "bouquet: error: injected failure for seed 13" >&2; exit 3 ;;
  *" --seed 14 "*) sleep 30 ;;
  *" --seed 15 "*) [ -n "${{SLURM_ARRAY_JOB_ID:-}}" ] && scancel "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"; sleep 30 ;;
esac
exec {} "$@"
)",
                                           BOUQUET_BINARY);
    fs::permissions(wrapper_, fs::perms::owner_all);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void write_experiment(const std::string& seeds) {
    std::ofstream(dir_ / "exp.yaml") << fmt::format(R"(version: 1
name: slurm-sweep
description: a test of the Slurm executor
scenario: tiny.yaml
seeds: {}
grid:
  - name: recovery
    key: policies.recovery
    values: [replay, restart]
metrics: [tokens_per_s, recoveries, finished_share]
timeout_s: 3
)",
                                                    seeds);
  }
  Output sweep(const std::string& arguments) {
    return shell(fmt::format("cd {} && {} sweep exp.yaml --no-plots --binary {} {}", dir_.string(), BOUQUET_BINARY,
                             wrapper_.string(), arguments));
  }

  static std::string* skip_reason_;
  fs::path dir_;
  fs::path wrapper_;
};

std::string* SlurmSweep::skip_reason_ = nullptr;

TEST_F(SlurmSweep, GivesTheRowsOfALocalSweepFailuresIncluded) {
  write_experiment("[12, 13, 14]");
  const Output local = sweep("--out local --jobs 2");
  ASSERT_EQ(local.status, 0) << local.text;
  const Output slurm = sweep("--out slurm --executor slurm --slurm-array-max 2 --slurm-poll 0.3");
  ASSERT_EQ(slurm.status, 0) << slurm.text;
  EXPECT_THAT(slurm.text, HasSubstr("submitted 6 runs as Slurm job"));
  EXPECT_THAT(slurm.text, HasSubstr("(6 array tasks)"));
  const std::vector<std::string> rows = rows_without_wall(dir_ / "slurm/runs.csv");
  EXPECT_EQ(rows, rows_without_wall(dir_ / "local/runs.csv"));
  ASSERT_EQ(rows.size(), 7u);
  EXPECT_THAT(rows[1], HasSubstr(",replay,12,ok,,"));
  EXPECT_THAT(rows[2], HasSubstr(",replay,13,failed,exit status 3: injected failure for seed 13"));
  EXPECT_THAT(rows[3], HasSubstr(",replay,14,failed,killed after the time limit of 3 s"));
  EXPECT_EQ(read(dir_ / "slurm/aggregate.csv"), read(dir_ / "local/aggregate.csv"));
  EXPECT_THAT(read(dir_ / "slurm/report.md"), HasSubstr("**4 of 6 runs failed**"));
}

TEST_F(SlurmSweep, ResumeSubmitsOnlyTheRunsWithoutResults) {
  write_experiment("[1, 2]");
  ASSERT_EQ(sweep("--out s --executor slurm --slurm-poll 0.3").status, 0);
  const std::vector<std::string> whole = rows_without_wall(dir_ / "s/runs.csv");
  ASSERT_EQ(whole.size(), 5u);
  // Forget one run's row and result, as if its task had never run.
  std::string kept;
  std::string run_id;
  std::istringstream lines(read(dir_ / "s/runs.csv"));
  for (std::string line; std::getline(lines, line);) {
    if (run_id.empty() && line.find(",restart,2,") != std::string::npos) {
      run_id = line.substr(0, line.find(','));
      continue;
    }
    kept += line + "\n";
  }
  ASSERT_FALSE(run_id.empty());
  std::ofstream(dir_ / "s/runs.csv", std::ios::trunc) << kept;
  fs::remove(dir_ / "s/runs" / (run_id + ".exit"));
  fs::remove(dir_ / "s/runs" / (run_id + ".json"));

  const Output resumed = sweep("--out s --executor slurm --slurm-poll 0.3 --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.text;
  EXPECT_THAT(resumed.text, HasSubstr("3 already recorded, 1 to go"));
  EXPECT_THAT(resumed.text, HasSubstr("submitted 1 runs as Slurm job"));
  EXPECT_EQ(rows_without_wall(dir_ / "s/runs.csv"), whole);
}

TEST_F(SlurmSweep, ATaskThatEndsWithoutAResultIsAFailedRowWithItsStateAndLog) {
  write_experiment("[15]");
  const Output out = sweep("--out s --executor slurm --slurm-poll 0.3");
  ASSERT_EQ(out.status, 0) << out.text;
  const std::string runs = read(dir_ / "s/runs.csv");
  EXPECT_THAT(runs, HasSubstr(",replay,15,failed,no result: Slurm task "));
  EXPECT_THAT(runs, HasSubstr("ended CANCELLED"));
  EXPECT_THAT(runs, HasSubstr((dir_ / "s/slurm/task-").string()));
}

}  // namespace

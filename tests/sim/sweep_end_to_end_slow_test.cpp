// `bouquet sweep` as a user runs it, on a tiny scenario: CSVs, report and plots; the same seed
// gives the same row; a sweep killed mid-run and resumed ends with the rows of an uninterrupted
// one; a malformed experiment is refused before any run; a failing run is a row, not a gap.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/sim/support/tiny_scenario.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// The tiny scenario with 2% of activations resetting a server: the seed decides which, so seeds
// give different rows and a seed always the same one.
const std::string kScenario = bouquet::sim::testing::tiny_sweep_scenario(
    63, "churn: {activation_failure_probability: 0.02}\npolicies: {ban_base_s: 0}\n");

std::string experiment(const std::string& seeds, const std::string& extra = "") {
  return fmt::format(R"(version: 1
name: tiny-sweep
description: a test of the sweep machinery
scenario: tiny.yaml
seeds: {}
grid:
  - name: recovery
    key: policies.recovery
    values: [replay, restart]
metrics: [tokens_per_s, recoveries, finished_share]
{})",
                     seeds, extra);
}

struct Output {
  int status = 0;
  std::string text;
};

class SweepEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("bouquet-sweep-e2e-{}-{}", ::getpid(),
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "tiny.yaml") << kScenario;
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_experiment(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  Output sweep(const std::string& arguments) {
    const std::string command = fmt::format("cd {} && {} sweep {} 2>&1", dir_.string(), BOUQUET_BINARY, arguments);
    Output out;
    FILE* pipe = ::popen(command.c_str(), "r");
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
    std::string line;
    while (std::getline(lines, line)) rows.push_back(line.substr(0, line.rfind(',')));
    return rows;
  }

  fs::path dir_;
};

TEST_F(SweepEndToEnd, WritesRowsAggregateReportAndPlots) {
  write_experiment("exp.yaml", experiment("[1, 2, 3]"));
  const Output out = sweep("exp.yaml --out result --jobs 2");
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("sweep: 6 runs, 0 already recorded, 6 to go"));
  EXPECT_THAT(out.text, HasSubstr("sweep: 6/6 done"));
  const std::vector<std::string> rows = rows_without_wall(dir_ / "result/runs.csv");
  ASSERT_EQ(rows.size(), 7u) << read(dir_ / "result/runs.csv");
  EXPECT_EQ(rows[0], "run_id,recovery,seed,status,error,tokens_per_s,recoveries,finished_share");
  // Grid order once complete: replay's seeds, then restart's.
  EXPECT_THAT(rows[1], HasSubstr(",replay,1,ok,,"));
  EXPECT_THAT(rows[6], HasSubstr(",restart,3,ok,,"));

  const std::string aggregate = read(dir_ / "result/aggregate.csv");
  EXPECT_THAT(aggregate, HasSubstr("recovery,runs,failed,tokens_per_s_mean,tokens_per_s_ci95_low"));
  EXPECT_THAT(aggregate, HasSubstr("\nreplay,3,0,"));
  EXPECT_THAT(aggregate, HasSubstr("\nrestart,3,0,"));

  const std::string report = read(dir_ / "result/report.md");
  EXPECT_THAT(report, HasSubstr("# tiny-sweep"));
  EXPECT_THAT(report, HasSubstr("2 points x 3 seeds (1, 2, 3) = 6 runs; 6 recorded, 0 of them failed"));
  EXPECT_THAT(report, HasSubstr("### tokens_per_s (tokens/s)"));
  EXPECT_THAT(report, HasSubstr("- By recovery (mean over the other axes): replay → "));
  EXPECT_THAT(report, HasSubstr("| recovery | runs | failed | tokens_per_s |"));
  // Plots are drawn with Debian's matplotlib (scripts/setup.sh installs it) and embedded.
  EXPECT_THAT(report, HasSubstr("![tokens_per_s](plot-1-tokens_per_s.png)")) << read(dir_ / "result/plots.log");
  const std::string png = read(dir_ / "result/plot-1-tokens_per_s.png");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

TEST_F(SweepEndToEnd, TheSameSeedGivesTheSameRowAndSeedsDiffer) {
  write_experiment("a.yaml", experiment("[4, 7]"));
  write_experiment("b.yaml", experiment("[7]"));
  ASSERT_EQ(sweep("a.yaml --out a --jobs 2").status, 0);
  ASSERT_EQ(sweep("b.yaml --out b --jobs 1").status, 0);
  const std::vector<std::string> a = rows_without_wall(dir_ / "a/runs.csv");
  const std::vector<std::string> b = rows_without_wall(dir_ / "b/runs.csv");
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 3u);
  // Seed 7 of each point: the same run id, parameters and metrics in both sweeps.
  EXPECT_EQ(a[2], b[1]);
  EXPECT_EQ(a[4], b[2]);
  // Seeds 4 and 7 differ somewhere (which activations fail): the metrics part differs.
  auto metrics = [](const std::string& row) { return row.substr(row.find(",ok,")); };
  EXPECT_TRUE(metrics(a[1]) != metrics(a[2]) || metrics(a[3]) != metrics(a[4])) << a[1] << "\n" << a[2];
}

TEST_F(SweepEndToEnd, AKilledSweepResumesToTheRowsOfAnUninterruptedOne) {
  write_experiment("exp.yaml", experiment("{count: 5, first: 1}"));
  ASSERT_EQ(sweep("exp.yaml --out whole --jobs 2").status, 0);

  // Start the same sweep, kill it (no chance to clean up) once some rows are written.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::chdir(dir_.c_str()) != 0) ::_exit(127);
    ::freopen("/dev/null", "w", stderr);
    ::execl(BOUQUET_BINARY, BOUQUET_BINARY, "sweep", "exp.yaml", "--out", "cut", "--jobs", "2", nullptr);
    ::_exit(127);
  }
  const fs::path cut_csv = dir_ / "cut/runs.csv";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         (!fs::exists(cut_csv) || rows_without_wall(cut_csv).size() < 3)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const size_t rows_at_kill = rows_without_wall(cut_csv).size() - 1;
  ASSERT_GE(rows_at_kill, 2u);
  ASSERT_LT(rows_at_kill, 10u) << "the sweep finished before it could be killed";
  EXPECT_FALSE(fs::exists(dir_ / "cut/report.md"));

  // Without --resume the directory is refused rather than overwritten.
  const Output again = sweep("exp.yaml --out cut --jobs 2");
  EXPECT_NE(again.status, 0);
  EXPECT_THAT(again.text, HasSubstr("already holds a sweep: pass --resume"));

  const Output resumed = sweep("exp.yaml --out cut --jobs 2 --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.text;
  EXPECT_THAT(resumed.text, HasSubstr(fmt::format("{} already recorded, {} to go", rows_at_kill, 10 - rows_at_kill)));
  EXPECT_EQ(rows_without_wall(cut_csv), rows_without_wall(dir_ / "whole/runs.csv"));
  EXPECT_EQ(read(dir_ / "cut/aggregate.csv"), read(dir_ / "whole/aggregate.csv"));

  // Resuming a finished sweep runs nothing and keeps the rows.
  const Output nothing_left = sweep("exp.yaml --out cut --resume --no-plots");
  ASSERT_EQ(nothing_left.status, 0);
  EXPECT_THAT(nothing_left.text, HasSubstr("10 already recorded, 0 to go"));
  EXPECT_EQ(rows_without_wall(cut_csv), rows_without_wall(dir_ / "whole/runs.csv"));
}

TEST_F(SweepEndToEnd, AMalformedExperimentIsRefusedBeforeAnyRun) {
  // A key the experiment schema does not have, after valid plots and a time limit.
  write_experiment("bad.yaml", experiment("[1]", R"(timeout_s: 60
plots:
  - {metric: tokens_per_s, x: recovery}
)") + R"(extra_axes: 1
)");
  Output out = sweep("bad.yaml --out never");
  EXPECT_NE(out.status, 0);
  EXPECT_THAT(out.text, HasSubstr("bad.yaml:14:1: extra_axes: unknown key"));
  EXPECT_FALSE(fs::exists(dir_ / "never"));

  std::string text = experiment("[1]");
  text.replace(text.find("[replay, restart]"), 17, "[replay, restart, pray]");
  write_experiment("bad2.yaml", text);
  out = sweep("bad2.yaml --out never");
  EXPECT_NE(out.status, 0);
  EXPECT_THAT(out.text, HasSubstr("bad2.yaml:9:"));
  EXPECT_THAT(out.text, HasSubstr("value 'pray' of axis 'recovery'"));
  EXPECT_FALSE(fs::exists(dir_ / "never"));
}

TEST_F(SweepEndToEnd, FailingRunsAreRecordedWithErrorAndSeed) {
  // A stand-in for bouquet that fails for seed 13 and hangs for seed 14, and is bouquet otherwise.
  const fs::path wrapper = dir_ / "flaky-bouquet.sh";
  std::ofstream(wrapper) << fmt::format(R"(#!/bin/sh
case " $* " in
  *" --seed 13 "*) echo "bouquet: error: injected failure for seed 13" >&2; exit 3 ;;
  *" --seed 14 "*) sleep 30 ;;
esac
exec {} "$@"
)",
                                        BOUQUET_BINARY);
  fs::permissions(wrapper, fs::perms::owner_all);
  write_experiment("exp.yaml", experiment("[12, 13, 14]", "timeout_s: 2\n"));
  const Output out = sweep(fmt::format("exp.yaml --out result --jobs 2 --binary {}", wrapper.string()));
  ASSERT_EQ(out.status, 0) << out.text;
  const std::string runs = read(dir_ / "result/runs.csv");
  EXPECT_THAT(runs, HasSubstr(",replay,12,ok,,"));
  EXPECT_THAT(runs, HasSubstr(",replay,13,failed,exit status 3: injected failure for seed 13,,,,"));
  EXPECT_THAT(runs, HasSubstr(",restart,14,failed,killed after the time limit of 2 s,,,,"));
  EXPECT_THAT(read(dir_ / "result/aggregate.csv"), HasSubstr("\nreplay,3,2,"));
  const std::string report = read(dir_ / "result/report.md");
  EXPECT_THAT(report, HasSubstr("**4 of 6 runs failed**"));
  EXPECT_THAT(report, HasSubstr("## Failed runs (4)"));
  EXPECT_THAT(report, HasSubstr("| recovery=restart | 13 | exit status 3: injected failure for seed 13 |"));
  EXPECT_THAT(report, Not(HasSubstr("| recovery=replay | 12 |")));
}

}  // namespace

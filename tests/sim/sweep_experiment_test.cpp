// Experiment files are checked whole before a sweep runs anything: every key, every axis value
// and every point of the grid through the scenario loader, with the experiment's own line in the
// message. Also the CSV a sweep appends to and resumes from.
#include "sim/sweep/experiment.h"
#include "sim/sweep/run_table.h"
#include "sim/yaml_fields.h"
#include "tests/sim/support/tiny_scenario.h"

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>

#include <unistd.h>

namespace bouquet::sim::sweep {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kScenario = testing::tiny_sweep_scenario(15);

class SweepExperiment : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("bouquet-sweep-experiment-{}", ::getpid());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "tiny.yaml") << kScenario;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Experiment load(const std::string& text) { return load_experiment_text(text, "exp.yaml", dir_.string()); }

  // The message of the ScenarioError loading `text` throws ("" when it loads).
  std::string error_of(const std::string& text) {
    try {
      load(text);
    } catch (const ScenarioError& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

constexpr const char* kGood = R"(version: 1
name: tiny-grid
scenario: tiny.yaml
seeds: {count: 2, first: 5}
set: {duration_s: 300}
grid:
  - name: latency_s
    key: regions.0.latency_s
    values: [0.001, 0.05]
  - name: failures
    values:
      - {label: none, set: {churn.activation_failure_probability: 0}}
      - {label: some, set: {churn.activation_failure_probability: 0.01, policies.recovery: restart}}
metrics: [tokens_per_s, recoveries]
)";

TEST_F(SweepExperiment, AGridExpandsFirstAxisSlowestWithItsOverrides) {
  const Experiment e = load(kGood);
  EXPECT_EQ(e.scenario_path, (dir_ / "tiny.yaml").string());
  EXPECT_THAT(e.seeds, ElementsAre(5u, 6u));
  const std::vector<Point> points = expand_points(e);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_THAT(points[1].labels, ElementsAre("0.001", "some"));
  EXPECT_THAT(points[1].overrides,
              ElementsAre("duration_s=300", "regions.0.latency_s=0.001", "churn.activation_failure_probability=0.01",
                          "policies.recovery=restart"));
  EXPECT_THAT(points[2].labels, ElementsAre("0.05", "none"));
  const std::vector<RunSpec> runs = expand_runs(e, points);
  ASSERT_EQ(runs.size(), 8u);
  EXPECT_EQ(runs[3].point, 1u);
  EXPECT_EQ(runs[3].seed, 6u);
  std::set<std::string> ids;
  for (const auto& r : runs) ids.insert(r.id);
  EXPECT_EQ(ids.size(), runs.size());
  // An id depends on what the run is, not where it sits in the grid: reordered values keep it.
  std::string reordered = kGood;
  reordered.replace(reordered.find("[0.001, 0.05]"), 13, "[0.05, 0.001]");
  const std::vector<Point> moved = expand_points(load(reordered));
  ASSERT_THAT(moved[3].labels, ElementsAre("0.001", "some"));
  EXPECT_EQ(run_id(moved[3], 6), runs[3].id);
  // Default plots: each metric over the first axis, the second as series.
  ASSERT_EQ(e.plots.size(), 2u);
  EXPECT_EQ(e.plots[0].x, "latency_s");
  EXPECT_EQ(e.plots[0].series, "failures");
}

TEST_F(SweepExperiment, UnknownKeysAreNamedWithTheirLine) {
  std::string text = kGood;
  text += "retries: 3\n";
  EXPECT_THAT(error_of(text), HasSubstr("exp.yaml:15:1: retries: unknown key"));
  text = kGood;
  text.replace(text.find("    values: [0.001"), 4, "    valuez: 1\n    ");
  EXPECT_THAT(error_of(text), HasSubstr("valuez: unknown key"));
}

TEST_F(SweepExperiment, AnOverrideTheScenarioRejectsIsNamedByTheAxisValueLine) {
  std::string text = kGood;
  text.replace(text.find("0.05]"), 4, "-0.5");
  // Line 9 holds the values; the scenario loader's own complaint follows.
  const std::string error = error_of(text);
  EXPECT_THAT(error, HasSubstr("exp.yaml:9:"));
  EXPECT_THAT(error, HasSubstr("value '-0.5' of axis 'latency_s'"));
  EXPECT_THAT(error, HasSubstr("must be a finite number in [0, 60], got -0.5"));

  text = kGood;
  text.replace(text.find("policies.recovery: restart"), 26, "policies.recovery: pray");
  EXPECT_THAT(error_of(text), HasSubstr("exp.yaml:13:9: grid.1.values.1: value 'some' of axis 'failures'"));
  EXPECT_THAT(error_of(text), HasSubstr("'pray' is not one of"));

  text = kGood;
  text.replace(text.find("key: regions.0.latency_s"), 24, "key: regions.0.latency");
  EXPECT_THAT(error_of(text), HasSubstr("regions.0.latency: unknown key"));
}

TEST_F(SweepExperiment, BadSeedsMetricsPlotsAndScenarioAreRejected) {
  std::string text = kGood;
  text.replace(text.find("{count: 2, first: 5}"), 20, "[1, 2, 1]");
  EXPECT_THAT(error_of(text), HasSubstr("seeds.2: this seed is listed twice"));
  text = kGood;
  text.replace(text.find("[tokens_per_s, recoveries]"), 26, "[tokens_per_s, happiness]");
  EXPECT_THAT(error_of(text), HasSubstr("metrics.1: unknown metric 'happiness'"));
  text = kGood;
  text += "plots:\n  - {metric: tokens_per_s, x: bandwidth}\n";
  EXPECT_THAT(error_of(text), HasSubstr("plots.0.x: no axis named 'bandwidth'"));
  text = kGood;
  text.replace(text.find("tiny.yaml"), 9, "missing.yaml");
  EXPECT_THAT(error_of(text), HasSubstr("cannot read the scenario file"));
  text = kGood;
  text.replace(text.find("name: failures"), 14, "name: seed");
  EXPECT_THAT(error_of(text), HasSubstr("'seed' is not a usable column name"));
}

TEST_F(SweepExperiment, AnImpossibleCombinationIsCaughtBeforeAnyRun) {
  // Each value loads alone, but together they move server s1 past the model's last block.
  const std::string text = R"(version: 1
name: combo
scenario: tiny.yaml
seeds: [1]
grid:
  - name: first
    values:
      - {label: a, set: {servers.0.blocks: "[0, 20]"}}
  - name: second
    values:
      - {label: b, set: {servers.1.blocks: "[16, 40]"}}
)";
  const std::string error = error_of(text);
  EXPECT_THAT(error, HasSubstr("value 'b' of axis 'second'"));
  const std::string combo = R"(version: 1
name: combo
scenario: tiny.yaml
seeds: [1]
grid:
  - name: first
    values:
      - {label: a, set: {servers.0.name: twin}}
  - name: second
    values:
      - {label: b, set: {servers.1.name: twin}}
)";
  // Alone, each renames one server; together two hosts share a name.
  EXPECT_THAT(error_of(combo), HasSubstr("exp.yaml:6:3: grid: point first=a second=b: "));
  EXPECT_THAT(error_of(combo), HasSubstr("the host name 'twin' is taken"));
}

TEST(SweepRunTable, CellsWithCommasQuotesAndLineBreaksSurvive) {
  const std::vector<std::string> cells = {"plain", "a,b", "say \"hi\"", "two\nlines", ""};
  const std::string line = csv_line(cells);
  EXPECT_EQ(line, "plain,\"a,b\",\"say \"\"hi\"\"\",two lines,");
  EXPECT_THAT(parse_csv_line(line), ElementsAre("plain", "a,b", "say \"hi\"", "two lines", ""));
  EXPECT_EQ(format_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(parse_number(format_number(0.1 + 0.2)), 0.1 + 0.2);
  EXPECT_TRUE(std::isnan(parse_number(format_number(std::numeric_limits<double>::quiet_NaN()))));
}

TEST_F(SweepExperiment, ATornLastRowIsDroppedAndAnotherExperimentsTableRefused) {
  const Experiment e = load(kGood);
  const std::string path = (dir_ / "runs.csv").string();
  RunRow row{"00ff", {"0.001", "none"}, 5, "ok", "", {12.5, 0}, 1.25};
  append_run_row(path, e, row);
  RunRow failed{"00fe", {"0.05", "some"}, 6, "failed", "exit status 1: boom, \"badly\"", {NAN, NAN}, 0.5};
  append_run_row(path, e, failed);
  { std::ofstream(path, std::ios::app) << "00fd,0.05,so"; }  // the sweep died mid-write
  const std::vector<RunRow> rows = read_run_table(path, e);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(format_row(rows[0]), format_row(row));
  EXPECT_EQ(format_row(rows[1]), format_row(failed));
  EXPECT_EQ(rows[1].error, "exit status 1: boom, \"badly\"");
  // The torn line is gone from the file too: the next row starts on a line of its own.
  append_run_row(path, e, row);
  EXPECT_EQ(read_run_table(path, e).size(), 3u);

  std::string other = kGood;
  other.replace(other.find("[tokens_per_s, recoveries]"), 26, "[tokens_per_s]");
  try {
    read_run_table(path, load(other));
    FAIL() << "a table with other columns was read";
  } catch (const std::runtime_error& error) {
    EXPECT_THAT(std::string(error.what()), HasSubstr("written by another experiment"));
  }
}

}  // namespace
}  // namespace bouquet::sim::sweep

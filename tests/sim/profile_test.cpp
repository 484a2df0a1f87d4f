// Implementation profiles, their calibration and the summary: a scenario takes its cost figures
// from the profile it names, `bouquet sim --calibrate` fits the fitted ones on the rows the
// profile names (and those rows are never counted as predictions), and a broken profile is one
// `file:line: key: problem` line before anything runs.
#include "sim/profile.h"
#include "sim/profile_fit.h"
#include "sim/scenario.h"
#include "sim/summary.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

namespace bouquet::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Two pinned A100 servers of a Llama-2-7B in f16 and one client; the `rows` and the weights vary.
std::string scenario_text(const std::string& weights, const std::string& rows) {
  return fmt::format(R"(version: 1
name: tiny
seed: 1
duration_s: 600
network: {{model: CM02, why: a test}}
model: {{name: llama-2-7b, weights: {}}}
profile: tiny
cost: {{client_efficiency: 0.7}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}}
servers:
  - {{name: s0, gpu: a100-80gb, region: lab, blocks: [0, 16]}}
  - {{name: s1, gpu: a100-80gb, region: lab, blocks: [16, 32]}}
clients:
  - {{name: c, device: cpu-8core, region: lab, start_s: 1, work: {{kind: generate, new_tokens: 15}}}}
rows:
{})",
                     weights, rows);
}

// f16 figures: shares cited, the block overhead fitted on `fit_rows`.
std::string profile_text(const std::string& fit_rows) {
  return fmt::format(R"(version: 1
name: tiny
procedure: least squares on the log error
formats:
  f16:
    compute_eff: {{value: 0.5, source: a test}}
    memory_eff: {{value: 0.8, source: a test}}
    block_overhead_s: {{value: 0.001, fitted: [{}]}}
    request_overhead_s: {{value: 0.001, source: a test}}
)",
                     fit_rows);
}

const char* kRows = R"(  - {name: fit, metric: steps_per_s, published: 12.0, quality: recalled}
  - {name: long, set: {clients.0.work.new_tokens: 63}, metric: steps_per_s, published: 11.0, quality: primary}
  - {name: far, set: {regions.0.latency_s: 0.01}, metric: steps_per_s, published: 9.0, quality: secondary}
)";

struct Folder {
  std::filesystem::path path;
  explicit Folder(const std::string& name)
      : path(std::filesystem::temp_directory_path() / fmt::format("bouquet-profile-test-{}-{}", getpid(), name)) {
    std::filesystem::create_directories(path / "profiles");
  }
  ~Folder() { std::filesystem::remove_all(path); }
  void write(const std::string& file, const std::string& text) const { std::ofstream(path / file) << text; }
  std::string at(const std::string& file) const { return (path / file).string(); }
};

std::string error_of(const std::function<void()>& load) {
  try {
    load();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct Output {
  int status = 0;
  std::string text;
};

Output bouquet_sim(const std::string& arguments) {
  const std::string command = fmt::format("{} sim {} 2>&1", BOUQUET_BINARY, arguments);
  Output out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.text.append(buffer, n);
  out.status = WEXITSTATUS(pclose(pipe));
  return out;
}

TEST(Profile, ScenarioTakesItsFiguresFromTheProfileAndMayOverrideThem) {
  Folder folder("figures");
  folder.write("profiles/tiny.yaml", profile_text("tiny/fit"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  ScenarioFile file = load_scenario_file(folder.at("tiny.yaml"), {});
  ASSERT_TRUE(file.profile.has_value());
  EXPECT_DOUBLE_EQ(file.base.cost.of(WeightFormat::f16).memory_eff, 0.8);
  EXPECT_DOUBLE_EQ(file.row_scenarios[2].cost.of(WeightFormat::f16).block_overhead_s, 0.001);
  EXPECT_TRUE(file.profile->is_calibration_row("tiny", "fit"));
  EXPECT_FALSE(file.profile->is_calibration_row("tiny", "long"));
  ScenarioFile overridden = load_scenario_file(folder.at("tiny.yaml"), {"cost.f16.memory_eff=0.5"});
  EXPECT_DOUBLE_EQ(overridden.base.cost.of(WeightFormat::f16).memory_eff, 0.5);
}

TEST(Profile, AProfileMissingAFigureTheScenarioNeedsIsOneLineNamingFileLineAndKey) {
  Folder folder("missing");
  folder.write("profiles/tiny.yaml", profile_text("tiny/fit"));
  folder.write("tiny.yaml", scenario_text("int8", kRows));  // the profile has no int8 figures
  const std::string error = error_of([&] { load_scenario_file(folder.at("tiny.yaml"), {}); });
  EXPECT_THAT(error, HasSubstr(folder.at("profiles/tiny.yaml") + ":5: formats.int8.compute_eff: missing"));
  Output out = bouquet_sim(folder.at("tiny.yaml"));
  EXPECT_NE(out.status, 0);
  EXPECT_THAT(out.text, HasSubstr("formats.int8.compute_eff: missing"));
  EXPECT_THAT(out.text, Not(HasSubstr("simulated")));  // nothing ran
}

TEST(Profile, AParameterIsCitedOrFittedAndAnUnknownProfileIsNamed) {
  Folder folder("uncited");
  folder.write("profiles/tiny.yaml", "version: 1\nname: tiny\nformats:\n  f16:\n    memory_eff: {value: 0.8}\n");
  EXPECT_THAT(error_of([&] { load_profile(folder.at("profiles/tiny.yaml")); }),
              HasSubstr(":5:17: formats.f16.memory_eff: say where the value comes from"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  std::ofstream(folder.path / "tiny.yaml", std::ios::app) << "";
  EXPECT_THAT(error_of([&] { load_scenario_file(folder.at("tiny.yaml"), {"profile=nobody"}); }),
              HasSubstr("profile: no profile 'nobody'"));
  EXPECT_THAT(error_of([&] { load_scenario_file(folder.at("tiny.yaml"), {"profile=../etc"}); }),
              HasSubstr("profile: '../etc' is not a profile name"));
}

TEST(Profile, CalibrationRowThatDoesNotExistIsRefusedAtTheParameterBeforeAnyRun) {
  Folder folder("norow");
  folder.write("profiles/tiny.yaml", profile_text("tiny/quick"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  const Profile profile = load_profile(folder.at("profiles/tiny.yaml"));
  EXPECT_THAT(error_of([&] { fit_profile(profile); }),
              HasSubstr(folder.at("profiles/tiny.yaml") +
                        ":8: f16.block_overhead_s: calibration row 'tiny/quick' does not exist"));
  folder.write("profiles/tiny.yaml", profile_text("elsewhere/fit"));
  EXPECT_THAT(error_of([&] { fit_profile(load_profile(folder.at("profiles/tiny.yaml"))); }),
              HasSubstr("calibration row 'elsewhere/fit' does not exist: no scenario"));
  Output out = bouquet_sim("--calibrate " + folder.at("profiles/tiny.yaml"));
  EXPECT_NE(out.status, 0);
  EXPECT_THAT(out.text, HasSubstr(":8: f16.block_overhead_s: calibration row"));
}

TEST(Profile, AFitThatDoesNotConvergeIsOneLineAtTheProcedure) {
  Folder folder("noconverge");
  // One overhead cannot make a 16-step and a 64-step run both 3x off: the fit has a floor, and one
  // iteration is not enough to find it.
  folder.write("profiles/tiny.yaml", profile_text("tiny/fit, tiny/long"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  EXPECT_THAT(
      error_of([&] { fit_profile(load_profile(folder.at("profiles/tiny.yaml")), 1); }),
      HasSubstr(folder.at("profiles/tiny.yaml") + ":3: procedure: the fit did not converge after 1 iterations"));
}

TEST(Profile, CalibrateFitsTheNamedRowAndWritesTheValueIntoTheProfile) {
  Folder folder("fit");
  folder.write("profiles/tiny.yaml", profile_text("tiny/fit"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  Output out = bouquet_sim("--calibrate " + folder.at("profiles/tiny.yaml"));
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("tiny/fit"));
  const Profile fitted = load_profile(folder.at("profiles/tiny.yaml"));
  EXPECT_NE(fitted.find("f16.block_overhead_s")->value, 0.001);
  EXPECT_EQ(fitted.find("f16.memory_eff")->value, 0.8);  // facts stay
  // The fitted profile reproduces the calibration row's published figure.
  Output run = bouquet_sim(folder.at("tiny.yaml"));
  ASSERT_EQ(run.status, 0) << run.text;
  EXPECT_TRUE(std::regex_search(run.text, std::regex(R"(\nfit +12\.0+ +12\.0+ +steps/s +[-+]0\.0% +calibration)")))
      << run.text;
}

// A prediction must not be tuned on its own figure: every shipped scenario takes its cost figures
// from the petals profile and sets none of its own, and the profile's calibration rows exist.
TEST(Profile, ShippedScenariosRunThePetalsProfileWithoutFiguresOfTheirOwn) {
  const std::filesystem::path folder = std::filesystem::path(BOUQUET_SOURCE_DIR) / "scenarios";
  int scenarios = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() != ".yaml") continue;
    // The fidelity scenarios run this project's engine (the bouquet profile) on a device file that
    // scripts/fidelity.sh measures at run time.
    if (entry.path().filename().string().starts_with("fidelity-")) continue;
    ++scenarios;
    const ScenarioFile file = load_scenario_file(entry.path().string(), {});
    EXPECT_EQ(file.base.profile, "petals") << entry.path();
    EXPECT_TRUE(file.base.cost_given.empty()) << entry.path();
    EXPECT_TRUE(file.calibration.empty()) << entry.path();
  }
  EXPECT_EQ(scenarios, 7);
  const Profile petals = load_profile((folder / "profiles" / "petals.yaml").string());
  EXPECT_EQ(calibration_rows(petals).size(), petals.calibration_rows().size());
}

// The summary prints one line per row with its role and source quality, and its statistics count
// only predictions with primary or secondary figures: the calibration row (even with a huge error)
// and the recalled one never.
TEST(Summary, CountsOnlyPrimaryAndSecondaryPredictions) {
  std::vector<SummaryRow> rows(5);
  rows[0] = {"a/fit", "steps_per_s", 10.0, 1.0, false, "calibration", "primary"};  // +900%, not counted
  rows[1] = {"a/p", "steps_per_s", 1.1, 1.0, false, "prediction", "primary"};
  rows[2] = {"a/s", "steps_per_s", 0.7, 1.0, false, "prediction", "secondary"};
  rows[3] = {"a/r", "steps_per_s", 5.0, 1.0, false, "prediction", "recalled"};
  rows[4] = {"a/dnf", "steps_per_s", std::nan(""), std::nullopt, true, "prediction", "secondary"};
  const SummaryStats stats = summarize(rows);
  EXPECT_EQ(stats.count, 2);
  EXPECT_NEAR(stats.median_abs_error, 0.2, 1e-12);
  EXPECT_NEAR(stats.max_abs_error, 0.3, 1e-12);
  EXPECT_NEAR(stats.share_within_15, 0.5, 1e-12);
  EXPECT_EQ(stats.did_not_finish_rows, 1);
  EXPECT_EQ(stats.did_not_finish_matched, 1);
}

TEST(Summary, CommandRunsEveryScenarioOfTheFolderIntoOneTable) {
  Folder folder("summary");
  folder.write("profiles/tiny.yaml", profile_text("tiny/fit"));
  folder.write("tiny.yaml", scenario_text("f16", kRows));
  Output out = bouquet_sim("--summary " + folder.path.string());
  ASSERT_EQ(out.status, 0) << out.text;
  SCOPED_TRACE(out.text);
  EXPECT_TRUE(std::regex_search(out.text, std::regex(R"(row +simulated +published +error +role +source\n)")));
  EXPECT_TRUE(
      std::regex_search(out.text, std::regex(R"(tiny/fit +[0-9.]+ +12\.0 +[-+][0-9.]+% +calibration recalled)")));
  EXPECT_TRUE(
      std::regex_search(out.text, std::regex(R"(tiny/long +[0-9.]+ +11\.0 +[-+][0-9.]+% +prediction +primary)")));
  EXPECT_TRUE(
      std::regex_search(out.text, std::regex(R"(tiny/far +[0-9.]+ +9\.000 +[-+][0-9.]+% +prediction +secondary)")));
  // Two predictions counted: the calibration row is not one of them.
  EXPECT_THAT(out.text, HasSubstr("predictions with primary or secondary sources: 2, median |error| "));
}

}  // namespace
}  // namespace bouquet::sim

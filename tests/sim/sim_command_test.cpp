// `bouquet sim` as a user runs it: a results table with the seed and a command that reproduces
// the run, JSON on request, and one clear line for a broken scenario.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

using ::testing::HasSubstr;

struct Output {
  int status = 0;
  std::string text;  // stdout and stderr
};

// `bouquet SUBCOMMAND_AND_ARGUMENTS` from the source tree, stdout and stderr together.
Output run_bouquet(const std::string& subcommand_and_arguments) {
  std::string command =
      fmt::format("cd {} && {} {} 2>&1", BOUQUET_SOURCE_DIR, BOUQUET_BINARY, subcommand_and_arguments);
  Output out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.text.append(buffer, n);
  out.status = WEXITSTATUS(pclose(pipe));
  return out;
}

Output run(const std::string& arguments) { return run_bouquet("sim " + arguments); }

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / fmt::format("bouquet-sim-test-{}-{}", getpid(), name);
}

TEST(SimCommand, PrintsRowsWithPublishedFiguresSeedAndReproduceLine) {
  auto json_path = temp_file("out.json");
  Output out = run(fmt::format("scenarios/bloom176b-offload.yaml --seed 9 --out {}", json_path.string()));
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("seed 9; reproduce with: bouquet sim scenarios/bloom176b-offload.yaml --seed 9"));
  EXPECT_THAT(out.text, HasSubstr("offload-256gbit-seq128"));
  EXPECT_THAT(out.text, HasSubstr("0.180"));  // the published figure beside the simulated one
  // Each row says whether it is a prediction or a calibration row, and how its figure reached us.
  EXPECT_TRUE(std::regex_search(out.text, std::regex(R"(offload-256gbit-seq128 .* prediction +primary )")));
  std::ifstream in(json_path);
  nlohmann::json json = nlohmann::json::parse(in);
  EXPECT_EQ(json["seed"], 9);
  ASSERT_EQ(json["rows"].size(), 2u);
  EXPECT_EQ(json["rows"][1]["name"], "offload-128gbit-seq128");
  EXPECT_GT(json["rows"][1]["simulated"].get<double>(), 0);
  EXPECT_EQ(json["rows"][1]["role"], "prediction");
  EXPECT_EQ(json["rows"][1]["quality"], "primary");
  std::filesystem::remove(json_path);
}

TEST(SimCommand, OverridesChangeTheRunAndAppearInTheReproduceLine) {
  Output out = run("scenarios/bloom176b-offload.yaml --set clients.0.offload.pcie_bps=512e9");
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("--set clients.0.offload.pcie_bps=512e9"));
  // Twice the PCIe bandwidth: 172.65 GB over 512 Gbit/s is 2.70 s a step, 0.37 steps/s.
  std::smatch row;
  ASSERT_TRUE(std::regex_search(out.text, row, std::regex(R"(offload-256gbit-seq128 +([0-9.]+))")));
  EXPECT_NEAR(std::stod(row[1]), 1 / 2.70, 0.005);
}

TEST(SimCommand, ABrokenScenarioIsOneLineNamingFileLineAndKey) {
  auto path = temp_file("broken.yaml");
  std::ifstream original(std::string(BOUQUET_SOURCE_DIR) + "/scenarios/bloom176b-a100x3.yaml");
  std::stringstream text;
  text << original.rdbuf();
  std::string yaml = text.str();
  yaml.replace(yaml.find("gpu: a100-80gb"), 14, "gpu: a100-81gb");
  std::ofstream(path) << yaml;
  Output out = run(path.string());
  EXPECT_EQ(out.status, 1);
  EXPECT_THAT(out.text, HasSubstr(fmt::format("bouquet: error: {}:", path.string())));
  EXPECT_THAT(out.text, HasSubstr("servers.0.gpu: unknown GPU 'a100-81gb'"));
  EXPECT_EQ(std::count(out.text.begin(), out.text.end(), '\n'), 1) << out.text;
  std::filesystem::remove(path);
  out = run("scenarios/bloom176b-offload.yaml --set model.weights=int3");
  EXPECT_THAT(out.text, HasSubstr("--set model.weights=int3: model.weights: 'int3' is not one of"));
}

TEST(SimCommand, RowsWithoutAPublishedFigureArePredictions) {
  Output out = run("scenarios/llama2-70b-t4x3.yaml");
  ASSERT_EQ(out.status, 0) << out.text;
  std::smatch row;
  ASSERT_TRUE(std::regex_search(out.text, row, std::regex(R"(fwd-1gbit-batch64 +([0-9.]+) +- +tokens/s +- )")))
      << out.text;
  EXPECT_GT(std::stod(row[1]), 0);
}

// bench-sim runs the scenario and a ping-pong of as many messages, and says how fast each went.
TEST(SimCommand, BenchSimTimesAScenarioAgainstABarePingPong) {
  Output out = run_bouquet("bench-sim --scenario scenarios/bloom7b1-faults.yaml --pairs 3");
  ASSERT_EQ(out.status, 0) << out.text;
  std::smatch scenario, pingpong;
  ASSERT_TRUE(std::regex_search(out.text, scenario, std::regex(R"(scenario +([0-9]+) +([0-9.]+) )"))) << out.text;
  ASSERT_TRUE(std::regex_search(out.text, pingpong, std::regex(R"(ping-pong +([0-9]+) +([0-9.]+) )"))) << out.text;
  EXPECT_EQ(scenario[1], pingpong[1]);           // the same message count
  EXPECT_GT(std::stoi(scenario[1].str()), 500);  // 128 steps through 4 hops, there and back
  EXPECT_THAT(out.text, HasSubstr("of bare SimGrid's rate"));
  EXPECT_THAT(out.text, HasSubstr("4 servers, 1 clients"));
  EXPECT_THAT(out.text, HasSubstr("MB resident at its peak"));
}

// --scale K runs the scenario with every server and client group K times as large: how the
// simulator's cost per message grows with the swarm.
TEST(SimCommand, BenchSimScalesEveryGroupOfTheScenario) {
  Output out = run_bouquet("bench-sim --scenario scenarios/bloom7b1-faults.yaml --pairs 3 --scale 2");
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("--scale 2: 8 servers, 2 clients")) << out.text;
  std::smatch scenario;
  ASSERT_TRUE(std::regex_search(out.text, scenario, std::regex(R"(scenario +([0-9]+) +([0-9.]+) )"))) << out.text;
  EXPECT_GT(std::stoi(scenario[1].str()), 1000);  // two clients' 128 steps through 4 hops, there and back
}

}  // namespace

// Spot checks with real processes: three honest `bouquet serve` processes and a liar
// (`serve --lie-after-steps 3`, listed first so the planner gives it the first span). Generation
// with spot checks at rate 1 gives the ids and text of `generate --local`, and `--json` reports
// the liar found by a spot check. Fine-tuning through the same kind of swarm at rate 1 catches the
// liar too (finetune --spot-check-rate) and trains to the loss of `finetune --local`.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

constexpr int kTokens = 24;
constexpr int kHonestSteps = 3;  // the prefill and two decode steps, then every output scaled
constexpr const char* kPrompt = "The quick brown fox";

// stdout of `bouquet <args>` (stderr to `stderr_to`), bounded by coreutils timeout so a hang fails instead of blocking.
std::string run(const std::string& args, int* status, const std::string& stderr_to = "/dev/null") {
  std::string out;
  const std::string command = fmt::format("timeout 120 {} {} 2>{}", BOUQUET_BINARY, args, stderr_to);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

TEST(SpotCheckProcesses, ALyingServerIsCaughtAndTheTextIsTheHonestOne) {
  const auto model = testing::fresh_dir("spot-check-model") / "tiny";
  int status = -1;
  const auto made = run(fmt::format("make-tiny-model --out {} --layers 6 --seed 7", model.string()), &status);
  ASSERT_EQ(status, 0) << made;
  const std::string generate = fmt::format("generate --model {} --prompt '{}' --max-new-tokens {} --ignore-eos --json",
                                           model.string(), kPrompt, kTokens);
  const auto local = run(generate + " --local", &status);
  ASSERT_EQ(status, 0) << local;
  const auto reference = nlohmann::json::parse(local);

  auto serve = [&](const std::string& blocks, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--model",  model.string(), "--blocks",  blocks,
                                  "--listen", "127.0.0.1:0",  "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ServerProcess(BOUQUET_BINARY, args, /*ready_timeout_s=*/60);
  };
  ServerProcess liar = serve("0:3", {"--lie-after-steps", std::to_string(kHonestSteps)});
  ServerProcess checker = serve("0:3"), referee = serve("0:3"), back = serve("3:6");
  const std::vector<std::string> peers{liar.address(), checker.address(), referee.address(), back.address()};

  const auto out = run(generate + fmt::format(" --peers {} --spot-check-rate 1", testing::join(peers)), &status);
  ASSERT_EQ(status, 0) << out;
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["ids"], reference["ids"]);
  EXPECT_EQ(json["text"], reference["text"]);
  EXPECT_EQ(json["route"][0]["peer"], liar.address()) << json["route"].dump();
  int found = 0;
  for (const auto& check : json["spot_checks"]) {
    if (check["outcome"] != "liar_found") {
      EXPECT_TRUE(check["outcome"] == "agreed" || check["outcome"] == "no_checker") << check.dump();
      continue;
    }
    ++found;
    EXPECT_EQ(check["liar"], liar.address()) << check.dump();
    EXPECT_EQ(check["checked"], liar.address()) << check.dump();
    EXPECT_EQ(check["step"], kHonestSteps + 1) << check.dump();  // its first wrong step
    EXPECT_EQ(check["blocks"], nlohmann::json::array({0, 3}));
  }
  EXPECT_EQ(found, 1) << json["spot_checks"].dump();
  // The liar's hop went to the checker (listed next), replaying the span's history.
  ASSERT_EQ(json["recoveries"].size(), 1u) << json["recoveries"].dump();
  EXPECT_EQ(json["recoveries"][0]["failed_peer"], liar.address());
  EXPECT_NE(json["recoveries"][0]["replacement"][0]["peer"], liar.address());
}

// "loss A -> B" of finetune's summary line.
std::pair<double, double> losses(const std::string& summary) {
  std::smatch m;
  if (!std::regex_search(summary, m, std::regex(R"(loss ([0-9.]+) -> ([0-9.]+))"))) return {-1, -1};
  return {std::stod(m[1]), std::stod(m[2])};
}

TEST(SpotCheckProcesses, ALyingServerIsCaughtDuringFineTuningAndTheLossIsTheHonestOne) {
  const auto dir = testing::fresh_dir("spot-check-finetune");
  const auto model = dir / "tiny";
  int status = -1;
  const auto made = run(fmt::format("make-tiny-model --out {} --layers 6 --seed 7", model.string()), &status);
  ASSERT_EQ(status, 0) << made;
  const std::string finetune =
      fmt::format("finetune --model {} --data {}/experiments/finetune/categories.jsonl --steps 6 --quiet --seed 3",
                  model.string(), BOUQUET_SOURCE_DIR);
  const auto local = run(finetune + " --local", &status);
  ASSERT_EQ(status, 0) << local;

  auto serve = [&](const std::string& blocks, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--model",  model.string(), "--blocks",  blocks,
                                  "--listen", "127.0.0.1:0",  "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ServerProcess(BOUQUET_BINARY, args, /*ready_timeout_s=*/60);
  };
  ServerProcess liar = serve("0:3", {"--lie-after-steps", "1"});
  ServerProcess checker = serve("0:3"), referee = serve("0:3"), back = serve("3:6");
  const std::vector<std::string> peers{liar.address(), checker.address(), referee.address(), back.address()};

  const auto err = dir / "stderr.txt";
  const auto out =
      run(fmt::format("{} --peers {} --spot-check-rate 1", finetune, testing::join(peers)), &status, err.string());
  std::stringstream report;
  report << std::ifstream(err).rdbuf();
  ASSERT_EQ(status, 0) << out << report.str();
  EXPECT_NE(report.str().find(fmt::format("{} lied (blocks [0, 3))", liar.address())), std::string::npos)
      << report.str();
  EXPECT_NE(report.str().find("liar(s) found"), std::string::npos) << report.str();
  const auto [before, after] = losses(out);
  const auto [local_before, local_after] = losses(local);
  ASSERT_GE(before, 0) << out;
  EXPECT_NEAR(before, local_before, 2e-4) << out << " vs " << local;
  EXPECT_NEAR(after, local_after, 2e-4) << out << " vs " << local;
}

}  // namespace
}  // namespace bouquet::net

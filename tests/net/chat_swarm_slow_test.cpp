// `bouquet chat` through a swarm of `bouquet serve` processes: the answers of a conversation are
// those of `chat --local` on the same input, over one session kept open across turns (the servers
// keep the conversation; a turn feeds only its new tokens), even when the server of a span dies
// between turns or closes the idle session while the user thinks; and SmolLM2 (skipped, saying
// why, when it cannot be fetched) answers a question through three servers.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "core/rng.h"
#include "gpu/chat_local.h"
#include "net/client/chat_swarm.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

const std::vector<std::string> kTurns = {"Hello there, who are you?", "Tell me more about the fox."};
constexpr int kNewTokens = 12;

// `bouquet chat ARGS` with `input` on its stdin, bounded by coreutils timeout: stdout and status.
testing::CommandResult chat_command(const std::string& args, const std::string& input) {
  static int calls = 0;
  const auto file = testing::fresh_dir(fmt::format("chat-input-{}", calls++)) / "input.txt";
  std::ofstream(file) << input;
  const std::string command =
      fmt::format("timeout 300 {} chat {} < {} 2>/dev/null", BOUQUET_BINARY, args, file.string());
  testing::CommandResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return r;
}

class ChatSwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::filesystem::path(testing::fresh_dir("chat-model") / "tiny");
    const auto made =
        testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 6 --seed 7", model_->string()));
    ASSERT_EQ(made.status, 0) << made.output;
    // The reference: every block in this process, the same turns.
    gpu::LocalChat local(config(""), "plain");
    local_ = new std::vector<std::vector<gpu::TokenId>>();
    local_fed_ = new std::vector<int64_t>();
    for (const auto& turn : kTurns) {
      local.reply(turn);
      local_->push_back(local.last_ids());
      local_fed_->push_back(local.last_fed_tokens());
      ASSERT_FALSE(local_->back().empty());
    }
    ASSERT_LT(local.chat().last_fed_tokens(), local.chat().last_prompt_tokens());
  }
  static void TearDownTestSuite() {
    delete local_;
    delete local_fed_;
    delete model_;
  }
  static gpu::GenerateConfig config(const std::string& peers) {
    gpu::GenerateConfig c;
    c.model = model_->string();
    c.local = peers.empty();
    c.max_new_tokens = kNewTokens;
    c.device = "cpu";
    return c;
  }
  static ServerProcess serve(const std::string& blocks, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--model",  model_->string(), "--blocks",  blocks,
                                  "--listen", "127.0.0.1:0",    "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ServerProcess(BOUQUET_BINARY, args, /*ready_timeout_s=*/60);
  }
  static SwarmGenerateOptions swarm_options(const std::string& peers) {
    SwarmGenerateOptions o;
    o.peers = peers;
    o.recovery_deadline_s = 30;
    return o;
  }

  static std::filesystem::path* model_;
  static std::vector<std::vector<gpu::TokenId>>* local_;
  static std::vector<int64_t>* local_fed_;  // tokens each local turn fed
};

std::filesystem::path* ChatSwarm::model_ = nullptr;
std::vector<std::vector<gpu::TokenId>>* ChatSwarm::local_ = nullptr;
std::vector<int64_t>* ChatSwarm::local_fed_ = nullptr;

TEST_F(ChatSwarm, TwoTurnsThroughThreeServersAnswerAsLocalOverOneSession) {
  std::vector<ServerProcess> servers;
  for (const char* span : {"0:2", "2:4", "4:6"}) servers.push_back(serve(span));
  SwarmChat chat(config(testing::join(testing::addresses(servers))),
                 swarm_options(testing::join(testing::addresses(servers))), "plain");
  for (size_t turn = 0; turn < kTurns.size(); ++turn) {
    chat.reply(kTurns[turn]);
    EXPECT_EQ(chat.chat().last_ids(), local_->at(turn)) << "turn " << turn;
    EXPECT_EQ(chat.chat().last_fed_tokens(), local_fed_->at(turn)) << "turn " << turn;
  }
  EXPECT_LT(chat.chat().last_fed_tokens(), chat.chat().last_prompt_tokens()) << "the first turn stays on the servers";
  EXPECT_EQ(chat.route().size(), 3u);
  EXPECT_EQ(chat.sessions_opened(), 1);
  EXPECT_TRUE(chat.recoveries().empty());
}

// The command itself, fed two lines on stdin: the same text as `chat --local`.
TEST_F(ChatSwarm, TheCommandPrintsWhatTheLocalCommandPrints) {
  std::vector<ServerProcess> servers;
  for (const char* span : {"0:2", "2:4", "4:6"}) servers.push_back(serve(span));
  const std::string input = kTurns[0] + "\n" + kTurns[1] + "\n";
  const std::string common =
      fmt::format("--model {} --chat-template plain --max-new-tokens {}", model_->string(), kNewTokens);
  const auto local = chat_command(common + " --local", input);
  const auto swarm = chat_command(common + " --peers " + testing::join(testing::addresses(servers)), input);
  ASSERT_EQ(local.status, 0) << local.output;
  ASSERT_EQ(swarm.status, 0) << swarm.output;
  EXPECT_EQ(swarm.output, local.output);
  EXPECT_GE(std::count(local.output.begin(), local.output.end(), '\n'), 2) << "an answer a line: " << local.output;
}

// The server of the middle span is killed between the turns; a spare holds the same blocks. The
// seed decides which of the two is listed first (and so chosen, then killed).
TEST_F(ChatSwarm, AServerKilledBetweenTurnsIsReplacedAndTheAnswerIsTheLocalOne) {
  core::Rng rng(testing::test_seed(22));
  std::vector<ServerProcess> servers;
  servers.push_back(serve("0:2"));
  servers.push_back(serve("2:4"));
  servers.push_back(serve("2:4"));
  servers.push_back(serve("4:6"));
  std::vector<std::string> peers = testing::addresses(servers);
  if (rng.next_u64() % 2) std::swap(peers[1], peers[2]);
  SwarmChat chat(config(testing::join(peers)), swarm_options(testing::join(peers)), "plain");
  chat.reply(kTurns[0]);
  EXPECT_EQ(chat.chat().last_ids(), local_->at(0));
  ASSERT_EQ(chat.route().size(), 3u);
  const std::string doomed = chat.route()[1].address;
  ServerProcess& victim = servers[doomed == servers[1].address() ? 1 : 2];
  const std::string spare = servers[doomed == servers[1].address() ? 2 : 1].address();
  ASSERT_EQ(victim.address(), doomed);
  victim.kill_now();
  chat.reply(kTurns[1]);
  EXPECT_EQ(chat.chat().last_ids(), local_->at(1));
  EXPECT_EQ(chat.route()[1].address, spare);
  const auto recoveries = chat.recoveries();
  ASSERT_EQ(recoveries.size(), 1u);
  EXPECT_EQ(recoveries[0].failed_peer, doomed);
  EXPECT_TRUE(recoveries[0].succeeded);
  EXPECT_GT(recoveries[0].positions_replayed, 0u) << "the spare got the conversation so far";
  EXPECT_EQ(chat.sessions_opened(), 1);
}

// The middle span's server dies in the middle of the second turn (its --crash-after-steps drill:
// the first turn takes 12 steps, the second dies at its 5th); listed first, it is the one chosen.
TEST_F(ChatSwarm, AServerDyingDuringATurnIsReplacedAndTheAnswerIsTheLocalOne) {
  std::vector<ServerProcess> servers;
  servers.push_back(serve("0:2"));
  servers.push_back(serve("2:4", {"--crash-after-steps", "16"}));
  servers.push_back(serve("2:4"));
  servers.push_back(serve("4:6"));
  SwarmChat chat(config(testing::join(testing::addresses(servers))),
                 swarm_options(testing::join(testing::addresses(servers))), "plain");
  for (size_t turn = 0; turn < kTurns.size(); ++turn) {
    chat.reply(kTurns[turn]);
    EXPECT_EQ(chat.chat().last_ids(), local_->at(turn)) << "turn " << turn;
  }
  EXPECT_FALSE(servers[1].running());
  const auto recoveries = chat.recoveries();
  ASSERT_EQ(recoveries.size(), 1u);
  EXPECT_EQ(recoveries[0].failed_peer, servers[1].address());
  EXPECT_TRUE(recoveries[0].succeeded);
  EXPECT_EQ(chat.route()[1].address, servers[2].address());
  EXPECT_EQ(chat.sessions_opened(), 1);
}

// Every server closes a session after 1 s without a step; the user thinks for 3 s. The same
// session re-opens on the same servers, replays the conversation, and answers as local does.
TEST_F(ChatSwarm, ServersThatClosedTheIdleSessionTakeItBackForTheNextTurn) {
  std::vector<ServerProcess> servers;
  for (const char* span : {"0:2", "2:4", "4:6"}) servers.push_back(serve(span, {"--session-idle-timeout", "1"}));
  SwarmChat chat(config(testing::join(testing::addresses(servers))),
                 swarm_options(testing::join(testing::addresses(servers))), "plain");
  chat.reply(kTurns[0]);
  EXPECT_EQ(chat.chat().last_ids(), local_->at(0));
  const auto route = chat.route();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto start = std::chrono::steady_clock::now();
  chat.reply(kTurns[1]);
  const double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(chat.chat().last_ids(), local_->at(1));
  const auto recoveries = chat.recoveries();
  EXPECT_EQ(recoveries.size(), 3u) << "every server closed its session";
  for (const auto& r : recoveries) {
    EXPECT_NE(r.cause.find("session_closed"), std::string::npos) << r.cause;
    EXPECT_TRUE(r.succeeded);
  }
  for (size_t i = 0; i < route.size(); ++i) EXPECT_EQ(chat.route().at(i).address, route[i].address);
  EXPECT_EQ(chat.sessions_opened(), 1);
  EXPECT_LT(took_s, 15.0) << "no server was banned: nothing to wait out";
}

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

TEST(ChatSwarmSmolLM2, AnswersTheCapitalOfFranceThroughThreeServers) {
  std::string why;
  const std::string model = fetch_smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const auto servers = testing::start_servers(model, {"0:10", "10:20", "20:30"});
  const auto out = chat_command(
      fmt::format("--model {} --peers {} --max-new-tokens 24", model, testing::join(testing::addresses(servers))),
      "What is the capital of France?\n");
  ASSERT_EQ(out.status, 0) << out.output;
  EXPECT_NE(out.output.find("Paris"), std::string::npos) << out.output;
}

}  // namespace
}  // namespace bouquet::net

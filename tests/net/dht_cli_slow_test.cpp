// `bouquet dht` as a real process, records announced through it by this test's own node, and
// `bouquet swarm` reading them back: coverage per block, text and JSON.
#include <gtest/gtest.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "net/dht/dht_directory.h"
#include "tests/net/support/identities.h"

namespace bouquet::net {
namespace {

// A child process whose stdout is a pipe; killed (SIGKILL) if still running at destruction.
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
  }
  ~Child() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_) fclose(out_);
  }
  std::string read_line() {
    char buffer[4096];
    return fgets(buffer, sizeof buffer, out_) ? std::string(buffer) : std::string();
  }
  std::string read_all() {
    std::string text, line;
    while (!(line = read_line()).empty()) text += line;
    return text;
  }
  int signal_and_wait(int signal) {
    kill(pid_, signal);
    return wait();
  }
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    waited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  bool waited_ = false;
};

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

core::ServerRecord record(uint64_t peer, core::BlockSpan span, const std::string& model,
                          core::ServerState state = core::ServerState::online) {
  core::ServerRecord r;
  r.peer = testing::test_peer(peer);
  r.address = fmt::format("127.0.0.1:{}", 6000 + peer);
  r.span = span;
  r.state = state;
  r.throughput_rps = 100.0 + static_cast<double>(peer);
  r.inference_rps = 50;
  r.cache_tokens_free = 1000 * peer;
  r.model_id = model;
  r.expires_at = unix_now() + 60;
  return r;
}

TEST(DhtCliTest, SwarmShowsCoverageOfRecordsAnnouncedThroughABootstrapNode) {
  Child dht({BOUQUET_BINARY, "dht", "--listen", "127.0.0.1:0"});
  const std::string line = dht.read_line();
  const std::string prefix = "dht: listening on ";
  ASSERT_EQ(line.rfind(prefix, 0), 0u) << line;
  const std::string bootstrap = line.substr(prefix.size(), line.size() - prefix.size() - 1);

  {
    DhtDirectoryConfig config;
    config.listen = "127.0.0.1:0";
    config.initial_peers = {bootstrap};
    config.model_blocks = 4;
    DhtDirectory announcer(config);
    ASSERT_TRUE(announcer.wait_connected(5));
    announcer.announce(core::Announce{record(1, {0, 2}, "tiny")}, testing::test_identity(1));
    announcer.announce(core::Announce{record(2, {2, 4}, "tiny")}, testing::test_identity(2));
    announcer.announce(core::Announce{record(3, {1, 3}, "tiny", core::ServerState::joining)},
                       testing::test_identity(3));
    announcer.announce(core::Announce{record(4, {0, 3}, "half")},
                       testing::test_identity(4));  // block 3 of "half" uncovered
    // The announcer may leave: the records live on the other nodes until they expire.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }

  Child json_run({BOUQUET_BINARY, "swarm", "--initial-peers", bootstrap, "--listen", "127.0.0.1:0", "--json"});
  const std::string json_text = json_run.read_all();
  ASSERT_EQ(json_run.wait(), 0);
  const auto swarm = nlohmann::json::parse(json_text);
  ASSERT_EQ(swarm["models"].size(), 2u) << json_text;
  const auto& half = swarm["models"][0];
  const auto& tiny = swarm["models"][1];
  EXPECT_EQ(half["model"], "half");
  EXPECT_FALSE(half["covered"].get<bool>());
  EXPECT_TRUE(half["blocks"][3]["servers"].empty());
  EXPECT_EQ(tiny["model"], "tiny");
  EXPECT_EQ(tiny["model_blocks"], 4);
  EXPECT_TRUE(tiny["covered"].get<bool>());
  // Block 1 is held by peer 1 (online) and peer 3 (joining), fastest first.
  const auto& block1 = tiny["blocks"][1]["servers"];
  ASSERT_EQ(block1.size(), 2u);
  EXPECT_EQ(block1[0]["peer"], testing::test_peer(3).to_string());
  EXPECT_EQ(block1[0]["state"], "joining");
  EXPECT_EQ(block1[1]["peer"], testing::test_peer(1).to_string());
  EXPECT_EQ(block1[1]["cache_tokens_free"], 1000);

  Child text_run({BOUQUET_BINARY, "swarm", "--initial-peers", bootstrap, "--listen", "127.0.0.1:0", "--model", "half"});
  const std::string text = text_run.read_all();
  EXPECT_EQ(text_run.wait(), 0);
  EXPECT_NE(text.find("model half (4 blocks): NOT covered"), std::string::npos) << text;
  EXPECT_NE(text.find("block 3: no server"), std::string::npos) << text;
  EXPECT_EQ(text.find("model tiny"), std::string::npos) << text;

  EXPECT_EQ(dht.signal_and_wait(SIGTERM), 0);
}

}  // namespace
}  // namespace bouquet::net

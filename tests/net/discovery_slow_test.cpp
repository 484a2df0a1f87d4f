// Issue 6 with real processes: one `bouquet dht` and four `bouquet serve --num-blocks` servers
// choose their own blocks of a tiny model (no spans given), `bouquet swarm` shows every block
// covered, `generate --initial-peers` (DHT lookup + min-latency routing) equals `generate --local`,
// and a server killed without warning leaves `bouquet swarm` once its records expire.
// Periods are short (update 1 s, so records expire 2 s after the last announcement); every wait
// polls with a generous deadline, for a loaded 2-core machine.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gpu/generate_local.h"
#include "net/client/generate_swarm.h"
#include "net/server/server_process.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using Clock = std::chrono::steady_clock;

// `bouquet dht` on a free UDP port of 127.0.0.1; SIGKILLed and reaped at destruction.
class DhtProcess {
 public:
  DhtProcess() {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      execl(BOUQUET_BINARY, BOUQUET_BINARY, "dht", "--listen", "127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
    char line[512] = {};
    if (fgets(line, sizeof line, out_)) {
      const std::string text(line);
      const std::string prefix = "dht: listening on ";
      if (text.rfind(prefix, 0) == 0) address_ = text.substr(prefix.size(), text.size() - prefix.size() - 1);
    }
  }
  ~DhtProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_) fclose(out_);
  }
  const std::string& address() const { return address_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string address_;
};

// `bouquet swarm --json` for model "tiny"; null when it failed.
nlohmann::json swarm_json(const std::string& dht) {
  const auto r =
      testing::run_bouquet(fmt::format("swarm --initial-peers {} --listen 127.0.0.1:0 --model tiny --json", dht));
  if (r.status != 0) return nullptr;
  auto json = nlohmann::json::parse(r.output, nullptr, false);
  if (json.is_discarded() || !json.contains("models") || json["models"].empty()) return nullptr;
  return json["models"][0];
}

bool covered(const nlohmann::json& model) { return !model.is_null() && model.value("covered", false); }

bool lists_address(const nlohmann::json& model, const std::string& address, bool online_only = false) {
  if (model.is_null()) return false;
  for (const auto& block : model["blocks"]) {
    for (const auto& server : block["servers"]) {
      if (server["address"] == address && (!online_only || server["state"] == "online")) return true;
    }
  }
  return false;
}

// Polls `done` every 0.5 s until it holds or timeout_s passes.
template <class F>
bool poll_until(F done, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return done();
}

TEST(DiscoverySlowTest, ServersChooseBlocksCoverTheModelGenerateMatchesLocalAndAKilledServerExpires) {
  const auto dir = testing::fresh_dir("discovery");
  const std::string model = (dir / "tiny").string();
  ASSERT_EQ(testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 6 --seed 5", model)).status, 0);
  // Throughput measurements go to a cache of this test's own.
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);

  DhtProcess dht;
  ASSERT_FALSE(dht.address().empty()) << "bouquet dht printed no listening line";

  std::vector<ServerProcess> servers;
  for (int i = 0; i < 4; ++i) {
    servers.emplace_back(
        BOUQUET_BINARY,
        std::vector<std::string>{"--model", model, "--num-blocks", "3", "--listen", "127.0.0.1:0", "--threads", "1",
                                 "--initial-peers", dht.address(), "--join-delay", "1", "--update-period", "1",
                                 "--balance-period", "3", "--seed", std::to_string(i + 1)},
        /*ready_timeout_s=*/120);
  }

  nlohmann::json model_view;
  ASSERT_TRUE(poll_until([&] { return covered(model_view = swarm_json(dht.address())); }, 120))
      << "no full coverage; last view: " << model_view.dump();
  EXPECT_EQ(model_view["model_blocks"], 6);
  // Nobody was told a span: each of the four holds 3 blocks it chose, all within the model.
  for (const auto& server : servers) {
    EXPECT_TRUE(lists_address(model_view, server.address())) << server.address() << " is not in " << model_view.dump();
  }

  const std::string prompt = "--prompt 'Once upon a time' --max-new-tokens 16 --ignore-eos --json";
  const auto local = testing::run_bouquet(fmt::format("generate --model {} --local {}", model, prompt));
  ASSERT_EQ(local.status, 0) << local.output;
  const auto swarm =
      testing::run_bouquet(fmt::format("generate --model {} --initial-peers {} {}", model, dht.address(), prompt));
  ASSERT_EQ(swarm.status, 0) << swarm.output;
  const auto local_json = nlohmann::json::parse(local.output);
  const auto swarm_json_out = nlohmann::json::parse(swarm.output);
  EXPECT_EQ(swarm_json_out["ids"], local_json["ids"]);
  EXPECT_EQ(swarm_json_out["text"], local_json["text"]);
  ASSERT_FALSE(swarm_json_out["route"].empty());
  // The route covers blocks 0..6 contiguously, on servers the DHT listed.
  uint32_t next_block = 0;
  for (const auto& hop : swarm_json_out["route"]) {
    EXPECT_EQ(hop["blocks"][0].get<uint32_t>(), next_block) << swarm.output;
    next_block = hop["blocks"][1].get<uint32_t>();
  }
  EXPECT_EQ(next_block, 6u);
  EXPECT_GT(swarm_json_out["expected_tokens_per_s"].get<double>(), 0) << swarm.output;

  // SIGKILL: no offline announcement. Its records expire 2 s after its last one.
  const std::string killed = servers[1].address();
  servers[1].kill_now();
  EXPECT_TRUE(poll_until(
      [&] {
        const auto view = swarm_json(dht.address());
        return !view.is_null() && !lists_address(view, killed);
      },
      60))
      << killed << " still listed: " << swarm_json(dht.address()).dump();
}

bool lists_state(const nlohmann::json& model, const std::string& address, const std::string& state) {
  if (model.is_null()) return false;
  for (const auto& block : model["blocks"]) {
    for (const auto& server : block["servers"]) {
      if (server["address"] == address && server["state"] == state) return true;
    }
  }
  return false;
}

TEST(DiscoverySlowTest, ACleanStopAnnouncesOfflineBeforeItsRecordsExpire) {
  const auto dir = testing::fresh_dir("discovery-stop");
  const std::string model = (dir / "tiny").string();
  ASSERT_EQ(testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 4 --seed 9", model)).status, 0);
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);
  DhtProcess dht;
  ASSERT_FALSE(dht.address().empty()) << "bouquet dht printed no listening line";
  // Records live 2 x 30 s: "offline" within seconds can only come from the goodbye announcement.
  ServerProcess server(BOUQUET_BINARY,
                       {"--model", model, "--num-blocks", "4", "--listen", "127.0.0.1:0", "--threads", "1",
                        "--initial-peers", dht.address(), "--join-delay", "0", "--update-period", "30"},
                       120);
  ASSERT_TRUE(poll_until([&] { return lists_state(swarm_json(dht.address()), server.address(), "online"); }, 60));
  EXPECT_EQ(server.stop(/*grace_s=*/10), 0);
  nlohmann::json view;
  EXPECT_TRUE(
      poll_until([&] { return lists_state(view = swarm_json(dht.address()), server.address(), "offline"); }, 20))
      << view.dump();
  EXPECT_FALSE(covered(view));
}

TEST(DiscoverySlowTest, ARecoveryReplansFromTheDirectoryAndFindsAServerThatJoinedAfterTheStart) {
  const auto dir = testing::fresh_dir("discovery-recovery");
  const std::string model = (dir / "tiny").string();
  ASSERT_EQ(testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 6 --seed 7", model)).status, 0);
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);
  DhtProcess dht;
  ASSERT_FALSE(dht.address().empty()) << "bouquet dht printed no listening line";
  auto flags = [&](const std::string& blocks, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--model",         model,         "--blocks",        blocks,
                                  "--listen",        "127.0.0.1:0", "--threads",       "1",
                                  "--initial-peers", dht.address(), "--update-period", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // Pinned servers still announce; the first dies like SIGKILL at its 9th step (the prompt is one).
  ServerProcess first(BOUQUET_BINARY, flags("0:3", {"--crash-after-steps", "8"}), 120);
  ServerProcess second(BOUQUET_BINARY, flags("3:6"), 120);
  ASSERT_TRUE(poll_until([&] { return covered(swarm_json(dht.address())); }, 120));

  gpu::GenerateConfig config;
  config.model = model;
  config.prompt = "Once upon a time";
  config.max_new_tokens = 24;
  config.ignore_eos = true;
  config.device = "cpu";
  config.threads = 1;
  gpu::GenerateConfig local = config;
  local.local = true;
  const auto expected = gpu::generate_local(local).ids;

  SwarmGenerateOptions swarm;
  swarm.initial_peers = {dht.address()};
  swarm.dht_listen = "127.0.0.1:0";
  swarm.recovery = "replay";
  // The spare starts after the client looked the swarm up: only a re-plan from fresh directory
  // records can find it. Generation waits inside the first token's callback until it is online.
  std::optional<ServerProcess> spare;
  bool spare_online = false;
  int tokens = 0;
  const RemoteGeneration generation = generate_through_swarm(config, swarm, [&](std::string_view) {
    if (tokens++ > 0) return;
    spare.emplace(BOUQUET_BINARY, flags("0:3"), 120);
    spare_online = poll_until([&] { return lists_address(swarm_json(dht.address()), spare->address(), true); }, 60);
  });
  ASSERT_TRUE(spare.has_value());
  EXPECT_TRUE(spare_online);
  EXPECT_EQ(generation.result.ids, expected);
  ASSERT_EQ(generation.route.size(), 2u);
  EXPECT_EQ(generation.route[0].address, first.address());
  ASSERT_EQ(generation.recoveries.size(), 1u);
  const RecoveryReport& recovery = generation.recoveries[0];
  EXPECT_TRUE(recovery.succeeded) << recovery.cause;
  EXPECT_EQ(recovery.failed_peer, first.address());
  ASSERT_EQ(recovery.replacement.size(), 1u);
  EXPECT_EQ(recovery.replacement[0].address, spare->address());
  EXPECT_EQ(recovery.replacement[0].span, (core::BlockSpan{0, 3}));
}

}  // namespace
}  // namespace bouquet::net

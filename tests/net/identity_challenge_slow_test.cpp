// The identity challenge with real processes (core/identity_proof.h): `bouquet dht`, an honest
// `bouquet serve` announcing itself, and an impostor `bouquet serve` (its own key) listening at
// the address that a victim's genuine signed record names (the record copied, or the address
// taken over). The impostor claims great speed, so routing would go there first. generate,
// finetune and chat through the DHT refuse the impostor by name when they ask who it is, route
// through the honest server and give what `--local` gives. And address pinning: a rogue record,
// signed with the rogue's own key, names an honest server's address with blocks it does not
// serve; generate and finetune drop it, say so, and the honest servers serve as `--local` does.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gpu/fingerprint.h"
#include "net/dht/dht_directory.h"
#include "net/server/server_process.h"
#include "tests/net/support/identities.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

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
    const std::string prefix = "dht: listening on ";
    if (fgets(line, sizeof line, out_) && std::string(line).rfind(prefix, 0) == 0) {
      address_ = std::string(line).substr(prefix.size(), std::string(line).size() - prefix.size() - 1);
    }
  }
  ~DhtProcess() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    if (out_) fclose(out_);
  }
  const std::string& address() const { return address_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string address_;
};

struct CommandRun {
  int status = -1;
  std::string out, err;
};

// `bouquet ARGS` (a shell command line) with `input` on stdin, bounded by coreutils timeout.
CommandRun run(const std::string& args, const std::filesystem::path& dir, const std::string& input = "") {
  static int calls = 0;
  const auto in = dir / fmt::format("in-{}.txt", calls);
  const auto err = dir / fmt::format("err-{}.txt", calls++);
  std::ofstream(in) << input;
  const std::string command =
      fmt::format("timeout 120 {} {} < {} 2> {}", BOUQUET_BINARY, args, in.string(), err.string());
  CommandRun r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.out.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::stringstream text;
  text << std::ifstream(err).rdbuf();
  r.err = text.str();
  return r;
}

// "loss A -> B" of finetune's summary line.
std::pair<double, double> losses(const std::string& summary) {
  std::smatch m;
  if (!std::regex_search(summary, m, std::regex(R"(loss ([0-9.]+) -> ([0-9.]+))"))) return {-1, -1};
  return {std::stod(m[1]), std::stod(m[2])};
}

// `finetune` of `model` for `steps` steps locally and through the DHT at `dht` (no spot checks):
// both succeed and give the same losses before and after; `tuned` is the swarm's run.
void finetune_like_local(const std::string& model, const std::string& dht, int steps, const std::filesystem::path& dir,
                         CommandRun& tuned) {
  const std::string data = std::string(BOUQUET_SOURCE_DIR) + "/experiments/finetune/categories.jsonl";
  const std::string tune = fmt::format("finetune --model {} --data {} --steps {} --quiet --seed 5", model, data, steps);
  const CommandRun tuned_local = run(tune + " --local", dir);
  ASSERT_EQ(tuned_local.status, 0) << tuned_local.err;
  tuned = run(fmt::format("{} --initial-peers {} --model-name tiny --spot-check-rate 0", tune, dht), dir);
  ASSERT_EQ(tuned.status, 0) << tuned.err;
  const auto [before, after] = losses(tuned.out);
  const auto [local_before, local_after] = losses(tuned_local.out);
  ASSERT_GE(before, 0) << tuned.out;
  EXPECT_NEAR(before, local_before, 2e-4) << tuned.out << " vs " << tuned_local.out;
  EXPECT_NEAR(after, local_after, 2e-4) << tuned.out << " vs " << tuned_local.out;
}

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// Publishes, through the DHT at `dht`, a record of `peer` at `address` for every block of the
// 4-block `model`, claiming great speed, signed with test_identity(`identity`).
void announce_fast_record(const std::string& dht, const std::string& model, core::PeerId peer,
                          const std::string& address, int identity) {
  DhtDirectoryConfig config;
  config.listen = "127.0.0.1:0";
  config.initial_peers = {dht};
  config.model_blocks = 4;
  config.fingerprint = model_fingerprint(model);
  DhtDirectory announcer(config);
  ASSERT_TRUE(announcer.wait_connected(10));
  core::ServerRecord r;
  r.peer = peer;
  r.address = address;
  r.span = core::BlockSpan{0, 4};
  r.state = core::ServerState::online;
  r.throughput_rps = 1e6;  // fast on paper: routing goes there first
  r.inference_rps = 1e6;
  r.cache_tokens_free = 8192;
  r.model_id = "tiny";
  r.expires_at = unix_now() + 600;
  announcer.announce(core::Announce{r}, testing::test_identity(identity));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

// Whether `bouquet swarm` came to list every one of `texts` within a minute.
bool swarm_lists(const std::string& dht, const std::vector<std::string>& texts) {
  for (int i = 0; i < 120; ++i) {
    const auto view =
        testing::run_bouquet(fmt::format("swarm --initial-peers {} --listen 127.0.0.1:0 --model tiny --json", dht));
    bool all = view.status == 0;
    for (const std::string& text : texts) all = all && view.output.find(text) != std::string::npos;
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return false;
}

TEST(IdentityChallengeSlowTest, GenerateFinetuneAndChatRefuseAnImpostorBehindAVictimsRecordAndMatchLocal) {
  const auto dir = testing::fresh_dir("identity-challenge");
  const std::string model = (dir / "tiny").string();
  ASSERT_EQ(testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 4 --seed 3", model)).status, 0);
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);
  DhtProcess dht;
  ASSERT_FALSE(dht.address().empty()) << "bouquet dht printed no listening line";

  // Routing goes to the impostor first: the honest server claims to be slow, the impostor fast (its
  // InfoReply says so; its own record lives under another model name, so no record of "tiny" but
  // the victim's names its address).
  const std::vector<std::string> common{
      "--model",         model, "--blocks",        "0:4",         "--listen",     "127.0.0.1:0",
      "--threads",       "1",   "--initial-peers", dht.address(), "--join-delay", "0",
      "--update-period", "5"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), common.begin(), common.end());
    return extra;
  };
  ServerProcess honest(BOUQUET_BINARY, with({"--throughput", "1", "--inference-rps", "1"}), 120);
  ServerProcess impostor(BOUQUET_BINARY,
                         with({"--throughput", "100000", "--inference-rps", "100000", "--model-name", "elsewhere",
                               "--identity", (dir / "impostor.pem").string()}),
                         120);
  // The victim's record, genuinely signed by the victim, names the impostor's address; both
  // records are in the DHT before any client looks.
  announce_fast_record(dht.address(), model, testing::test_peer(1), impostor.address(), 1);
  ASSERT_TRUE(swarm_lists(dht.address(), {honest.address(), impostor.address()})) << "the records never showed up";
  const std::string refusal = fmt::format("refusing server {} failed the identity challenge", impostor.address());
  const std::string named = fmt::format("the records for this address name peer {}", testing::test_peer(1).to_string());

  const std::string prompt = "--prompt 'Once upon a time' --max-new-tokens 12 --ignore-eos --json";
  const CommandRun local = run(fmt::format("generate --model {} --local {}", model, prompt), dir);
  ASSERT_EQ(local.status, 0) << local.err;
  const CommandRun swarm = run(
      fmt::format("generate --model {} --initial-peers {} --spot-check-rate 0 {}", model, dht.address(), prompt), dir);
  ASSERT_EQ(swarm.status, 0) << swarm.err;
  const auto local_json = nlohmann::json::parse(local.out);
  const auto swarm_json = nlohmann::json::parse(swarm.out);
  EXPECT_EQ(swarm_json["ids"], local_json["ids"]);
  EXPECT_EQ(swarm_json["text"], local_json["text"]);
  EXPECT_NE(swarm.err.find(refusal), std::string::npos) << swarm.err;
  EXPECT_NE(swarm.err.find(named), std::string::npos) << swarm.err;
  // Refused when asked who it is (address pinning), before any plan: nothing to recover from.
  EXPECT_EQ(swarm_json["recoveries"].size(), 0u) << swarm.out;
  EXPECT_EQ(swarm_json["route"][0]["peer"], honest.address());

  CommandRun tuned;
  ASSERT_NO_FATAL_FAILURE(finetune_like_local(model, dht.address(), 2, dir, tuned));
  EXPECT_NE(tuned.err.find(refusal), std::string::npos) << tuned.err;
  EXPECT_EQ(tuned.out.find(impostor.address()), std::string::npos) << "the route: " << tuned.out;

  const std::string turns = "Hello there\nTell me more\n";
  const std::string chat = fmt::format("chat --model {} --max-new-tokens 8 --chat-template chatml", model);
  const CommandRun chat_local = run(chat + " --local", dir, turns);
  ASSERT_EQ(chat_local.status, 0) << chat_local.err;
  const CommandRun chatted = run(fmt::format("{} --initial-peers {}", chat, dht.address()), dir, turns);
  ASSERT_EQ(chatted.status, 0) << chatted.err;
  EXPECT_EQ(chatted.out, chat_local.out);
  EXPECT_NE(chatted.err.find(refusal), std::string::npos) << chatted.err;
}

TEST(IdentityChallengeSlowTest, ARogueRecordAtAnHonestServersAddressIsDroppedAndTheHonestServersStillServe) {
  const auto dir = testing::fresh_dir("address-pinning");
  const std::string model = (dir / "tiny").string();
  ASSERT_EQ(testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 4 --seed 3", model)).status, 0);
  ::setenv("BOUQUET_CACHE_DIR", (dir / "cache").c_str(), 1);
  DhtProcess dht;
  ASSERT_FALSE(dht.address().empty()) << "bouquet dht printed no listening line";
  auto serve = [&](const std::string& blocks) {
    return std::vector<std::string>{
        "--model",         model, "--blocks",        blocks,        "--listen",        "127.0.0.1:0",
        "--threads",       "1",   "--initial-peers", dht.address(), "--join-delay",    "0",
        "--update-period", "5",   "--throughput",    "1",           "--inference-rps", "1"};
  };
  ServerProcess front(BOUQUET_BINARY, serve("0:2"), 120);
  ServerProcess back(BOUQUET_BINARY, serve("2:4"), 120);
  const core::PeerId rogue = testing::test_peer(2);
  // The rogue's record, validly signed with its own key, names the front server's address with
  // every block, fast: routing that believed it would ask the front server for blocks 2:4.
  announce_fast_record(dht.address(), model, rogue, front.address(), 2);
  ASSERT_TRUE(swarm_lists(dht.address(), {back.address(), rogue.to_string()})) << "the records never showed up";
  const std::string dropped =
      fmt::format("bouquet: dropping the record of peer {} at {}", rogue.to_string(), front.address());

  const std::string prompt = "--prompt 'Once upon a time' --max-new-tokens 12 --ignore-eos --json";
  const CommandRun local = run(fmt::format("generate --model {} --local {}", model, prompt), dir);
  ASSERT_EQ(local.status, 0) << local.err;
  const CommandRun swarm = run(
      fmt::format("generate --model {} --initial-peers {} --spot-check-rate 0 {}", model, dht.address(), prompt), dir);
  ASSERT_EQ(swarm.status, 0) << swarm.err;
  const auto swarm_json = nlohmann::json::parse(swarm.out);
  EXPECT_EQ(swarm_json["ids"], nlohmann::json::parse(local.out)["ids"]);
  EXPECT_EQ(swarm_json["recoveries"].size(), 0u) << swarm.out;
  EXPECT_NE(swarm.err.find(dropped), std::string::npos) << swarm.err;
  EXPECT_EQ(swarm.err.find("refusing"), std::string::npos) << swarm.err;

  // Fine-tuning re-reads the directory from its second pass on: the rogue record stays dropped,
  // the front server is never asked for blocks it lacks, so never avoided.
  CommandRun tuned;
  ASSERT_NO_FATAL_FAILURE(finetune_like_local(model, dht.address(), 3, dir, tuned));
  EXPECT_NE(tuned.err.find(dropped), std::string::npos) << tuned.err;
  EXPECT_EQ(tuned.err.find("failed on"), std::string::npos) << tuned.err;
}

}  // namespace
}  // namespace bouquet::net

// Memory, connection and request limits of a live `bouquet serve` process against hostile or
// greedy clients: what once cost a server gigabytes or a spinning core now costs little,
// the limits are answered with a clear error, and honest clients are still served.
#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "gpu/fingerprint.h"
#include "gpu/span_runner.h"
#include "net/client/remote_chain.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/process_stats.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using testing::cpu_seconds;
using testing::open_blocks_0_2;
using testing::open_fds;
using testing::RawClient;
using testing::rss_bytes;

// Info from a new connection, retried while the server may still be catching up with closes.
bool honest_info(const std::string& address) {
  for (int i = 0; i < 50; ++i) {
    try {
      RawClient client(address);
      client.call<core::InfoReply>(core::InfoRequest{77}, 5);
      return true;
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return false;
}

void expect_error(RawClient& client, core::ErrorCode code, const std::string& words) {
  const testing::ReadResult r = client.read(10);
  const auto* m = std::get_if<core::Message>(&r);
  ASSERT_TRUE(m && std::holds_alternative<core::ErrorReply>(*m)) << testing::describe(r);
  const core::Error& error = std::get<core::ErrorReply>(*m).error;
  EXPECT_EQ(error.code, code) << error.to_string();
  EXPECT_NE(error.message.find(words), std::string::npos) << error.message;
}

void expect_error_then_close(RawClient& client, core::ErrorCode code, const std::string& words) {
  expect_error(client, code, words);
  EXPECT_TRUE(std::holds_alternative<testing::Closed>(client.read(10)));
}

// A 12-byte header claiming a 64 MiB body made the server allocate and zero all of it for the 30 s
// frame timeout: 32 such connections took 2 GiB. Now each holds what it sent.
TEST(HostileLoad, HeadersClaimingTheLargestBodyCostOnlyWhatArrived) {
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(model, {"0:2"});
  const std::string& address = servers[0].address();
  RawClient probe(address);
  probe.call<core::InfoReply>(core::InfoRequest{1});
  const uint64_t before = rss_bytes(servers[0].pid());
  std::vector<std::unique_ptr<RawClient>> stalled;
  for (int i = 0; i < 32; ++i) {
    stalled.push_back(std::make_unique<RawClient>(address));
    std::vector<uint8_t> bytes = frame_header(kDefaultMaxFrameBytes);
    bytes.resize(bytes.size() + 1000, 0x5a);  // and a little of the body
    stalled.back()->send_bytes(bytes);
  }
  // The server reads every connection between answers on this one; give it a moment besides.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  probe.call<core::InfoReply>(core::InfoRequest{2});
  const uint64_t after = rss_bytes(servers[0].pid());
  const double growth_mb = (static_cast<double>(after) - static_cast<double>(before)) / 1e6;
  std::cout << fmt::format("server RSS {:.1f} MB -> {:.1f} MB with 32 stalled 64 MiB frames\n", before / 1e6,
                           after / 1e6);
  EXPECT_LT(growth_mb, 200.0);
  EXPECT_TRUE(servers[0].running());
}

TEST(HostileLoad, ConnectionsBeyondTheCapAreRefusedAndHonestClientsServedAfter) {
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(model, {"0:2"}, {"--max-connections", "8"});
  const std::string& address = servers[0].address();
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<RawClient>(address));
    held.back()->call<core::InfoReply>(core::InfoRequest{static_cast<uint64_t>(i + 1)});
  }
  RawClient extra(address);
  expect_error_then_close(extra, core::ErrorCode::overloaded, "maximum of 8 connections");
  held.pop_back();  // one leaves: room for an honest client
  EXPECT_TRUE(honest_info(address));
  EXPECT_TRUE(servers[0].running());
}

TEST(HostileLoad, IdleConnectionIsClosedAfterTheTimeoutButNotOneWithASession) {
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(model, {"0:2"}, {"--idle-timeout", "1"});
  const std::string& address = servers[0].address();
  RawClient idle(address);
  RawClient with_session(address);
  with_session.call<core::SessionOpened>(open_blocks_0_2(model_fingerprint(model), 1, 16));
  const auto start = std::chrono::steady_clock::now();
  expect_error_then_close(idle, core::ErrorCode::timeout, "--idle-timeout");
  const double waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited_s, 0.5) << "closed before its idle timeout";
  // Quiet for longer than the timeout, but it holds a session: still served.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(with_session.call<core::InfoReply>(core::InfoRequest{3}).request_id, 3u);
}

// One open the size of the cache held everyone else off for the 300 s session idle timeout. While
// others wait, a session without a step is now closed after --session-idle-contended.
TEST(HostileLoad, AnIdleSessionHoldingTheCacheYieldsToAWaitingClient) {
  const auto model = testing::tiny_model("hostile-load", 2);
  const std::string model_id = model_fingerprint(model);
  auto servers = testing::start_servers(model, {"0:2"}, {"--cache-tokens", "100", "--session-idle-contended", "1"});
  RawClient hog(servers[0].address());
  hog.call<core::SessionOpened>(open_blocks_0_2(model_id, 1, 100));
  RawClient waiting(servers[0].address());
  core::OpenSession open = open_blocks_0_2(model_id, 2, 50);
  open.cache_wait_timeout_s = 20;
  EXPECT_EQ(waiting.call<core::SessionOpened>(open, 20).session_id, 2u);
  expect_error(hog, core::ErrorCode::session_closed, "wait for cache room");
}

// At the fd limit accept() fails with EMFILE while the connection stays in the backlog, and the
// accept loop retried at once, forever: a full core. It now backs off.
TEST(HostileLoad, AcceptAtTheFdLimitBacksOffInsteadOfSpinning) {
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(model, {"0:2"});
  const pid_t pid = servers[0].pid();
  const std::string& address = servers[0].address();
  rlimit before{};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, nullptr, &before), 0);
  const rlimit low{open_fds(pid) + 4, before.rlim_max};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &low, nullptr), 0);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 16; ++i) clients.push_back(std::make_unique<RawClient>(address));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double cpu_before = cpu_seconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_s = cpu_seconds(pid) - cpu_before;
  std::cout << fmt::format("server used {:.2f} s of CPU in 2 s at its fd limit\n", cpu_s);
  EXPECT_LT(cpu_s, 0.5) << "the accept loop spins";
  clients.clear();
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &before, nullptr), 0);
  EXPECT_TRUE(honest_info(address));
}

TEST(HostileLoad, InfoAnnouncesTheServersLimits) {
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(
      model, {"0:2"},
      {"--cache-tokens", "100", "--request-tokens-max", "20", "--client-cache-tokens-max", "60",
       "--client-opens-waiting-max", "3", "--client-tasks-queued-max", "4", "--tasks-queued-max", "9"});
  RawClient client(servers[0].address());
  const auto info = client.call<core::InfoReply>(core::InfoRequest{1});
  EXPECT_EQ(info.request_tokens_max, 20u);
  EXPECT_EQ(info.client_cache_tokens_max, 60u);
  EXPECT_EQ(info.client_opens_waiting_max, 3u);
  EXPECT_EQ(info.client_tasks_queued_max, 4u);
  EXPECT_EQ(info.tasks_queued_max, 9u);
  // And holds to them: an open beyond the client quota is refused with its name, and the
  // connection goes on.
  client.send(open_blocks_0_2(model_fingerprint(model), 1, 70));
  expect_error(client, core::ErrorCode::over_limit, "client_cache_tokens_max");
  EXPECT_EQ(client.call<core::SessionOpened>(open_blocks_0_2(model_fingerprint(model), 2, 60)).session_id, 2u);
}

// One forward of 8,192 tokens held the only compute slot for 47 s. Servers now cap a request and
// announce the cap; the client splits a long pass to it (whole sequences) instead of being refused,
// and gets the output of every block run here.
TEST(HostileLoad, ClientSplitsAPassToTheCapTheServerAnnounces) {
  const uint64_t seed = testing::test_seed(25);
  const auto model = testing::tiny_model("hostile-load", 2);
  auto servers = testing::start_servers(model, {"0:2"}, {"--request-tokens-max", "20"});
  SwarmClientConfig client_config;
  client_config.peers = testing::addresses(servers);
  SwarmClient client(client_config);
  RemoteChainConfig config;
  config.model_id = model_fingerprint(model);
  config.num_blocks = 2;
  config.max_tokens_per_request = 0;  // the client alone would send one request
  config.seed = seed;
  RemoteChain chain(client, config);
  at::manual_seed(static_cast<int64_t>(seed));
  const at::Tensor hidden = at::randn({5, 10, 64});
  const at::Tensor out = chain.forward(hidden, {});
  EXPECT_EQ(chain.requests_sent(), 3u) << "5 rows of 10 positions, 20 per request: 2, 2 and 1 rows";
  const gpu::SpanRunner blocks({model, 0, -1, "f32", "cpu"});
  EXPECT_TRUE(at::allclose(out, blocks.forward(hidden, {}), 1e-5, 1e-5));
  // One sequence longer than the cap cannot be split: a clear error naming the limit.
  try {
    chain.forward(at::randn({1, 30, 64}), {});
    ADD_FAILURE() << "a 30-position sequence passed a 20-token cap";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.error().code, core::ErrorCode::over_limit) << e.what();
    EXPECT_NE(std::string(e.what()).find("request_tokens_max"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bouquet::net

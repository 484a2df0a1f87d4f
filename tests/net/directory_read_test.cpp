// A re-plan that reads the directory (core PlanRoute::read_directory) does not wait for a slow
// read when the servers the client knows still give a chain: a DHT lookup that meets a dead node
// takes seconds, a recovery should not. When the known servers give no chain, it waits for the
// read and plans on its answer. Servers on threads of this process; the directory is a function
// the test holds shut until it chooses to answer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "gpu/fingerprint.h"
#include "net/client/swarm_client.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using testing::serve_config;
using testing::ThreadServer;

core::PlanRoute plan(uint64_t id, const std::string& model_id, std::vector<core::PeerId> avoid) {
  core::PlanRoute p{id, model_id, core::BlockSpan{0, 4}, std::move(avoid), 64, ""};
  p.read_directory = true;
  return p;
}

TEST(DirectoryRead, ARecoveryPlansOnKnownServersWhileTheReadIsSlowAndWaitsOnlyWhenTheyGiveNoChain) {
  const auto model = testing::tiny_model("directory-read", 4);
  const std::string model_id = model_fingerprint(model);
  ThreadServer a{serve_config(model, "0:4")};
  ThreadServer b{serve_config(model, "0:4")};
  const std::string c = "127.0.0.1:1";  // named by the directory only; planning does not dial it

  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<int> reads{0};
  SwarmClientConfig config;
  config.peers = {a.address(), b.address()};
  config.directory = [&, open] {
    ++reads;
    open.wait();  // a lookup that waits on a dead node
    return std::vector<core::ServerRecord>{testing::online_record(core::PeerId{0x5eed}, c, model_id)};
  };
  SwarmClient client(config);
  const auto& peers = client.discover();
  ASSERT_EQ(peers.size(), 2u);
  ASSERT_TRUE(peers[0].info && peers[1].info) << peers[0].error << peers[1].error;
  const core::PeerId pa = peers[0].peer, pb = peers[1].peer;
  core::Rng rng(7);

  // The first server failed: the plan names the second at once although the read has not answered.
  const core::RoutePlanned first = client.plan_route(plan(1, model_id, {pa}), core::Routing::greedy, rng);
  ASSERT_TRUE(first.chain.ok()) << first.chain.error().to_string();
  ASSERT_EQ(first.chain.value().size(), 1u);
  EXPECT_EQ(first.chain.value()[0].peer, pb);
  // The read runs meanwhile, on its own thread (which may not have begun yet).
  for (int i = 0; i < 10000 && reads.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(reads.load(), 1);

  // Both known servers failed: nothing known gives a chain, so the plan takes the read's answer
  // (the directory answers now) and names the server only the directory knows.
  gate.set_value();
  const core::RoutePlanned second = client.plan_route(plan(2, model_id, {pa, pb}), core::Routing::greedy, rng);
  ASSERT_TRUE(second.chain.ok()) << second.chain.error().to_string();
  ASSERT_EQ(second.chain.value().size(), 1u);
  EXPECT_EQ(client.address_of(second.chain.value()[0].peer), c);
  EXPECT_GE(reads.load(), 1);

  // A plan that does not read the directory starts no read.
  client.take_directory_read(SwarmClient::kDirectoryReadWaitS);  // any read the last plan started
  const int before = reads.load();
  core::PlanRoute quiet = plan(3, model_id, {pa});
  quiet.read_directory = false;
  EXPECT_TRUE(client.plan_route(quiet, core::Routing::greedy, rng).chain.ok());
  EXPECT_EQ(reads.load(), before);
}

}  // namespace
}  // namespace bouquet::net

// Hostile clients replayed against a live `bouquet serve` process: each case once brought a
// server down, and the server must now answer, keep its books straight and go on serving.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "gpu/fingerprint.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using testing::open_blocks_0_2;
using testing::RawClient;

// A client holding most of the cache queues a large open and a small one behind it, then
// disconnects: withdrawing the first granted the second before it was withdrawn too, and the
// server aborted. Now the server frees everything and the next client gets the whole budget.
TEST(HostileClients, DisconnectWithTwoQueuedOpensLeavesTheServerServing) {
  const auto model = testing::tiny_model("hostile", 2);
  const std::string model_id = model_fingerprint(model);
  auto servers = testing::start_servers(model, {"0:2"}, {"--cache-tokens", "100"});
  const std::string& address = servers[0].address();
  {
    RawClient hostile(address);
    const auto opened = hostile.call<core::SessionOpened>(open_blocks_0_2(model_id, 1, 90, 0));
    EXPECT_EQ(opened.session_id, 1u);
    hostile.send(open_blocks_0_2(model_id, 2, 50, 30));
    hostile.send(open_blocks_0_2(model_id, 3, 5, 30));
    // Both are queued once the server answers a later request on the same connection.
    EXPECT_EQ(hostile.call<core::InfoReply>(core::InfoRequest{9}).cache_tokens_free, 10u);
  }  // disconnects
  RawClient next(address);
  core::InfoReply info;
  for (int i = 0; i < 100; ++i) {  // the server learns of the disconnect asynchronously
    info = next.call<core::InfoReply>(core::InfoRequest{10});
    if (info.cache_tokens_free == 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(info.cache_tokens_free, 100u);
  EXPECT_EQ(next.call<core::SessionOpened>(open_blocks_0_2(model_id, 4, 100, 0)).session_id, 4u);
  EXPECT_TRUE(servers[0].running()) << "the server died";
}

}  // namespace
}  // namespace bouquet::net

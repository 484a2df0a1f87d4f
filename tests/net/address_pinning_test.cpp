// Address pinning (core/address_pins.h) with servers on threads of this process: two honest
// servers split a 4-block model, and a rogue record, signed with the rogue's own key, names the
// first server's address with every block and great speed. The client's challenged InfoRequest
// pins that address to the key its server proves, so the rogue record is dropped (said on stderr)
// before any plan: fine-tuning, which plans on the directory's records from its third pass, and
// generation give the local results and never ask the honest server for blocks it lacks, so it is
// never avoided.
#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/prompt_tuning.h"
#include "gpu/span_runner.h"
#include "net/client/remote_chain.h"
#include "net/client/remote_generation.h"
#include "net/dht/identity.h"
#include "tests/net/support/identities.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using testing::serve_config;
using testing::ThreadServer;

core::PeerId keyed(ServeConfig& config, const std::string& name) {
  return testing::give_own_key(config, "pinning-" + name);
}

struct Swarm {
  std::filesystem::path model = testing::tiny_model("pinning", 4);
  std::string model_id = model_fingerprint(model);
  ServeConfig front_config = serve_config(model, "0:2");
  ServeConfig back_config = serve_config(model, "2:4");
  core::PeerId front_key = keyed(front_config, "front");
  core::PeerId back_key = keyed(back_config, "back");
  ThreadServer front{front_config};
  ThreadServer back{back_config};
  core::PeerId rogue_key = testing::test_peer(2);

  // The records a DHT lookup would give: both honest servers' (slow on paper) and the rogue's,
  // which claims the front server's address for every block, fast.
  std::vector<core::ServerRecord> records() const {
    auto front_record = testing::online_record(front_key, front.address(), model_id, {0, 2});
    auto back_record = testing::online_record(back_key, back.address(), model_id, {2, 4});
    auto rogue = testing::online_record(rogue_key, front.address(), model_id, {0, 4});
    for (auto* r : {&front_record, &back_record}) r->throughput_rps = r->inference_rps = 1;
    rogue.throughput_rps = rogue.inference_rps = 1e6;
    return {rogue, front_record, back_record};
  }
  SwarmClientConfig client_config() const {
    SwarmClientConfig c;
    c.peers = {front.address(), back.address()};
    for (const core::ServerRecord& r : records()) c.identities[r.address].insert(r.peer);
    c.directory = [this] { return records(); };
    return c;
  }
  std::string dropped_line() const {
    return fmt::format("bouquet: dropping the record of peer {} at {}", rogue_key.to_string(), front.address());
  }
};

TEST(AddressPinning, FineTuningDropsARogueRecordAtAnHonestAddressAndNeverAsksItForBlocksItLacks) {
  Swarm swarm;
  ::testing::internal::CaptureStderr();
  SwarmClient client(swarm.client_config());
  RemoteChainConfig config;
  config.model_id = swarm.model_id;
  config.num_blocks = 4;
  RemoteChain chain(client, config);
  const gpu::SpanRunner blocks({swarm.model, 0, -1, "f32", "cpu"});
  gpu::LocalPassChain local(blocks);
  at::manual_seed(5);
  // From the second pass on, plans read the directory; the third plans on what it said.
  for (int pass = 0; pass < 4; ++pass) {
    SCOPED_TRACE(fmt::format("pass {}", pass));
    const at::Tensor x = at::randn({2, 5, 64});
    const at::Tensor remote = chain.forward(x, {});
    EXPECT_TRUE(at::allclose(remote, local.forward(x, {}), 1e-4, 1e-5));
    for (const core::Chain& c : chain.chains()) {
      ASSERT_EQ(c.size(), 2u) << chain.describe_chain();
      EXPECT_EQ(client.address_of(c[0].peer), swarm.front.address());
      EXPECT_EQ(c[0].span, (core::BlockSpan{0, 2}));
    }
    chain.backward(at::ones_like(remote));
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(chain.retries().empty()) << "the honest server was never refused, so never avoided";
  EXPECT_TRUE(chain.impostors().empty());
  ASSERT_TRUE(client.pins().contains(swarm.front.address()));
  EXPECT_EQ(client.pins().at(swarm.front.address()).key, swarm.front_key);
  EXPECT_EQ(client.pins().at(swarm.back.address()).key, swarm.back_key);
  EXPECT_NE(err.find(swarm.dropped_line()), std::string::npos) << err;
  EXPECT_NE(err.find(fmt::format("the server there proved it holds the key of peer {}", swarm.front_key.to_string())),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("refusing"), std::string::npos) << err;
}

TEST(AddressPinning, GenerationDropsTheRogueRecordAndGivesTheLocalIds) {
  Swarm swarm;
  const gpu::ClientHead head({swarm.model, "f32", "cpu"});
  gpu::GenerationRequest request;
  request.prompt_ids = {1, 17, 300, 42};
  request.max_new_tokens = 8;
  request.ignore_eos = true;
  ::testing::internal::CaptureStderr();
  SwarmClient client(swarm.client_config());
  const RemoteGeneration generation = generate_remote_ids(head, client, swarm.model_id, request, {});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(generation.result.ids, testing::local_greedy_ids(swarm.model, request.prompt_ids, 8));
  EXPECT_TRUE(generation.recoveries.empty());
  ASSERT_EQ(generation.route.size(), 2u);
  EXPECT_EQ(generation.route[0].address, swarm.front.address());
  EXPECT_NE(err.find(swarm.dropped_line()), std::string::npos) << err;
}

}  // namespace
}  // namespace bouquet::net

// The virtual swarm with its directory and balanced servers: servers choose their spans through
// the directory as real ones do, clients find them there, and a server that leaves or moves
// costs its clients a recovery, never a wrong output.
#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>

#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "fake-12/5a1ab1e5";

BlockServerConfig server_template(double rps) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 20;
  c.throughput_rps = rps;
  c.inference_rps = rps;
  return c;
}

BalancerNodeConfig balancer(uint32_t num_blocks, double rps, double balance_period_s = 1e9) {
  BalancerNodeConfig c;
  c.model_id = kModel;
  c.model_blocks = kBlocks;
  c.num_blocks = num_blocks;
  c.throughput_rps = rps;
  c.inference_rps = rps;
  c.join_delay_s = 0.5;
  c.update_period_s = 2;
  c.balance_period_s = balance_period_s;
  return c;
}

GenerationSpec generation(uint64_t session_id, uint32_t new_tokens, Time start_at) {
  GenerationSpec g;
  g.session.session_id = session_id;
  g.session.model_id = kModel;
  g.session.num_blocks = kBlocks;
  g.session.hidden_size = kHidden;
  g.session.max_length = 4 + new_tokens + 1;
  g.session.reply_timeout_s = 2;
  g.prompt_tokens = 4;
  g.new_tokens = new_tokens;
  g.prompt_seed = session_id;
  g.start_at = start_at;
  return g;
}

// The blocks the online records of the directory cover, each counted once per server.
std::vector<int> coverage(const std::vector<ServerRecord>& records) {
  std::vector<int> covered(kBlocks, 0);
  for (const ServerRecord& r : records) {
    if (r.state != ServerState::online) continue;
    for (uint32_t b = r.span.begin; b < r.span.end; ++b) ++covered[b];
  }
  return covered;
}

TEST(SwarmBalancing, ServersJoiningOneByOneCoverTheModelAndAClientFindsThemThroughTheDirectory) {
  const uint64_t seed = test_seed(17);
  VirtualSwarm swarm(seed);
  swarm.use_directory();
  std::vector<PeerId> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(swarm.add_balanced_server(balancer(4, 10), server_template(10), 10.0 * i));
  }
  const PeerId client = swarm.add_client();
  const GenerationSpec spec = generation(1, 6, 40);
  const size_t g = swarm.generate(client, spec);
  swarm.run_until(200);

  // Each newcomer took the blocks nobody served: three disjoint spans covering the model once.
  EXPECT_EQ(coverage(swarm.directory_records(kModel)), std::vector<int>(kBlocks, 1));
  for (PeerId s : servers) {
    ASSERT_EQ(swarm.spans_served(s).size(), 1u) << "pinned by nothing, yet it moved";
    EXPECT_EQ(swarm.spans_served(s)[0].size(), 4u);
    EXPECT_EQ(swarm.balancer(s).phase(), BalancerNode::Phase::online);
  }
  const GenerationResult& r = swarm.result(g);
  ASSERT_TRUE(r.closed) << (r.error ? r.error->to_string() : "not finished");
  EXPECT_EQ(r.chain.size(), 3u);
  EXPECT_EQ(r.outputs, reference_outputs(spec));
}

TEST(SwarmBalancing, AServerStillLoadingIsNotRoutedToAndRefusesWhatReachesIt) {
  const uint64_t seed = test_seed(18);
  VirtualSwarm swarm(seed);
  swarm.use_directory();
  // One server, slow to load its 12 blocks: announced "joining" meanwhile.
  const PeerId server =
      swarm.add_balanced_server(balancer(kBlocks, 10), server_template(10), 0, 1e-3, /*load_s_per_block=*/1);
  const PeerId client = swarm.add_client();
  const GenerationSpec early = generation(2, 4, 3);
  const GenerationSpec later = generation(3, 4, 20);
  const size_t g_early = swarm.generate(client, early);
  const size_t g_later = swarm.generate(client, later);
  OpenSession open;
  open.session_id = 77;
  open.model_id = kModel;
  open.span = BlockSpan{0, kBlocks};
  open.max_length = 8;
  open.batch = 1;
  swarm.run_until(4);
  swarm.inject(client, server, open);
  swarm.run_until(100);

  // The early client finds no online server and says which block has none.
  const GenerationResult& e = swarm.result(g_early);
  ASSERT_TRUE(e.error.has_value());
  EXPECT_EQ(e.error->code, ErrorCode::no_route);
  EXPECT_NE(e.error->message.find("block 0"), std::string::npos) << e.error->to_string();
  // A request that reaches it anyway is refused, naming why.
  bool refused = false;
  for (const auto& [from, m] : swarm.inbox(client)) {
    if (auto* reply = std::get_if<ErrorReply>(&m); reply && from == server && reply->request_id == 77) {
      refused = reply->error.code == ErrorCode::span_not_served;
    }
  }
  EXPECT_TRUE(refused) << "no span_not_served answer to an open sent while loading";
  // Once loaded, it serves.
  const GenerationResult& l = swarm.result(g_later);
  ASSERT_TRUE(l.closed) << (l.error ? l.error->to_string() : "not finished");
  EXPECT_EQ(l.outputs, reference_outputs(later));
}

TEST(SwarmBalancing, WhenAServerLeavesAnotherMovesIntoTheHoleAndSessionsRecoverWithExactOutputs) {
  const uint64_t seed = test_seed(19);
  VirtualSwarm swarm(seed);
  swarm.use_directory();
  // Five servers of 4 blocks over 12: three cover the model once, two add second copies. When a
  // server of a single-copy span leaves, its blocks have nobody, and a server of a doubled span
  // moves there (the weakest block goes from 0 to one server's throughput).
  std::vector<PeerId> servers;
  for (int i = 0; i < 5; ++i) {
    servers.push_back(swarm.add_balanced_server(balancer(4, 10, /*balance_period_s=*/5), server_template(10), 5.0 * i));
  }
  swarm.run_until(40);
  const auto before = coverage(swarm.directory_records(kModel));
  ASSERT_EQ(std::count(before.begin(), before.end(), 2), 8) << "two spans doubled, one single";
  PeerId leaving;
  for (PeerId s : servers) {
    if (before[swarm.balancer(s).span()->begin] == 1) leaving = s;
  }
  ASSERT_NE(leaving, PeerId{});
  const PeerId client = swarm.add_client();
  // Long generations spanning the departure and the move that follows it.
  std::vector<size_t> gens;
  std::vector<GenerationSpec> specs;
  for (uint64_t i = 0; i < 4; ++i) {
    specs.push_back(generation(10 + i, 400, 41 + i));
    specs.back().session.recovery_deadline_s = 30;
    specs.back().session.route_retry_s = 1;
    gens.push_back(swarm.generate(client, specs.back()));
  }
  swarm.stop_at(leaving, 46);
  swarm.run_until(300);

  uint64_t moves = 0;
  for (PeerId s : servers) moves += s == leaving ? 0 : swarm.balancer(s).moves();
  std::string history;
  for (PeerId s : servers) {
    history += fmt::format("\n  {}{}:", s.to_string(), s == leaving ? " (left)" : "");
    for (BlockSpan span : swarm.spans_served(s)) history += " " + span.to_string();
  }
  // One move fills the hole; a second server may decide within the directory's delay of the
  // first (both see the hole), as real ones can.
  EXPECT_GE(moves, 1u) << "nobody moved into the hole" << history;
  EXPECT_LE(moves, 2u) << "servers kept moving after the hole was filled" << history;
  const auto after = coverage(swarm.directory_records(kModel));
  EXPECT_EQ(std::count(after.begin(), after.end(), 0), 0) << "a block stayed without a server";
  uint64_t recoveries = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    const GenerationResult& r = swarm.result(gens[i]);
    ASSERT_TRUE(r.closed) << "generation " << i << ": " << (r.error ? r.error->to_string() : "not finished");
    EXPECT_EQ(r.outputs, reference_outputs(specs[i])) << "generation " << i;
    recoveries += swarm.session(gens[i]).recoveries().size();
  }
  EXPECT_GE(recoveries, gens.size()) << "every chain crossed the departed server's span";
}

}  // namespace
}  // namespace bouquet::test

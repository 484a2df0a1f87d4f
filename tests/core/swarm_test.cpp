// Whole swarms of core state machines in the virtual swarm driver: results, isolation,
// admission and faults as a user of the swarm would notice them.
#include "tests/core/support/swarm.h"

#include <gtest/gtest.h>

#include <fmt/core.h>

#include "core/wire.h"
#include "tests/core/support/seed.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "fake-12/0123abcd";

BlockServerConfig server_config(BlockSpan span, uint64_t cache_tokens = 1 << 20) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.span = span;
  c.hidden_size = kHidden;
  c.cache_tokens = cache_tokens;
  return c;
}

GenerationSpec generation(uint64_t session_id, uint64_t prompt_seed, uint32_t prompt_tokens = 5,
                          uint32_t new_tokens = 6, uint32_t batch = 1) {
  GenerationSpec g;
  g.session.session_id = session_id;
  g.session.model_id = kModel;
  g.session.num_blocks = kBlocks;
  g.session.hidden_size = kHidden;
  g.session.max_length = prompt_tokens + new_tokens + 1;
  g.session.batch = batch;
  g.prompt_tokens = prompt_tokens;
  g.new_tokens = new_tokens;
  g.prompt_seed = prompt_seed;
  // Failures here must surface as typed errors; recovery has its own tests (recovery_test.cpp).
  g.session.recovery = RecoveryPolicy::none;
  return g;
}

// Outputs must equal the reference's first steps exactly (nothing wrong is ever produced).
void expect_prefix_of_reference(const GenerationResult& r, const GenerationSpec& spec) {
  const auto reference = reference_outputs(spec);
  ASSERT_LE(r.outputs.size(), reference.size());
  for (size_t i = 0; i < r.outputs.size(); ++i) ASSERT_EQ(r.outputs[i], reference[i]) << "step " << i;
}

TEST(Swarm, ThreeServersGiveTheSameOutputsAsOneServerHoldingAllBlocks) {
  const uint64_t seed = test_seed(31);
  Rng rng(seed);
  for (int run = 0; run < 30; ++run) {
    SCOPED_TRACE(testing::Message() << "run " << run);
    const auto a = 1 + static_cast<uint32_t>(rng.below(kBlocks - 2));
    const auto b = a + 1 + static_cast<uint32_t>(rng.below(kBlocks - a - 1));
    auto spec = generation(rng.next_u64(), rng.next_u64(), 1 + static_cast<uint32_t>(rng.below(16)),
                           1 + static_cast<uint32_t>(rng.below(12)), 1 + static_cast<uint32_t>(rng.below(3)));
    Link link{rng.uniform(0.001, 0.1), rng.uniform(1e6, 1e9)};

    VirtualSwarm one(seed + run);
    one.set_default_link(link);
    one.add_server(server_config({0, kBlocks}));
    const size_t g1 = one.generate(one.add_client(), spec);
    one.run();

    VirtualSwarm three(seed + run);
    three.set_default_link(link);
    three.add_server(server_config({0, a}));
    three.add_server(server_config({a, b}));
    three.add_server(server_config({b, kBlocks}));
    const size_t g3 = three.generate(three.add_client(), spec);
    three.run();

    const auto& r1 = one.result(g1);
    const auto& r3 = three.result(g3);
    ASSERT_TRUE(r1.closed && !r1.error) << (r1.error ? r1.error->to_string() : "unfinished");
    ASSERT_TRUE(r3.closed && !r3.error) << (r3.error ? r3.error->to_string() : "unfinished");
    ASSERT_EQ(r3.chain.size(), 3u);
    ASSERT_EQ(r1.outputs.size(), spec.new_tokens + 1);
    EXPECT_EQ(r3.outputs, r1.outputs);
    EXPECT_EQ(r1.outputs, reference_outputs(spec));
  }
}

TEST(Swarm, ConcurrentSessionsAreIsolatedWithAndWithoutBatching) {
  for (const uint32_t max_batch : {1u, 8u}) {
    SCOPED_TRACE(testing::Message() << "max_batch " << max_batch);
    const uint64_t seed = test_seed(32);
    Rng rng(seed);
    VirtualSwarm swarm(seed);
    std::vector<PeerId> servers;
    for (BlockSpan span : {BlockSpan{0, 4}, BlockSpan{4, 9}, BlockSpan{9, kBlocks}}) {
      auto config = server_config(span);
      config.max_batch = max_batch;
      servers.push_back(swarm.add_server(config));
    }
    std::vector<GenerationSpec> specs;
    std::vector<size_t> ids;
    for (int i = 0; i < 12; ++i) {
      // Two clients even reuse one session id: servers key sessions by (peer, id).
      auto spec = generation(i < 2 ? 77 : rng.next_u64(), rng.next_u64(), 1 + static_cast<uint32_t>(rng.below(10)),
                             4 + static_cast<uint32_t>(rng.below(8)), 1 + static_cast<uint32_t>(rng.below(2)));
      spec.start_at = rng.uniform(0, 0.05);
      specs.push_back(spec);
      ids.push_back(swarm.generate(swarm.add_client(), spec));
    }
    swarm.run();
    int overlapping = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& r = swarm.result(ids[i]);
      ASSERT_TRUE(r.closed && !r.error) << i << ": " << (r.error ? r.error->to_string() : "unfinished");
      EXPECT_EQ(r.outputs, reference_outputs(specs[i])) << "generation " << i;
      for (size_t j = 0; j < i; ++j) {
        const auto& o = swarm.result(ids[j]);
        overlapping += r.ready_at < o.finished_at && o.ready_at < r.finished_at;
      }
    }
    EXPECT_GT(overlapping, 10) << "the sessions should really have run at the same time";
    uint64_t batches = 0;
    for (PeerId s : servers) batches += swarm.batches_started(s);
    if (max_batch == 1) {
      EXPECT_EQ(batches, 0u);
    } else {
      EXPECT_GT(batches, 10u) << "concurrent decode steps should have been merged";
    }
  }
}

TEST(Swarm, SessionKeepsEveryHopsInputsByAbsolutePosition) {
  VirtualSwarm swarm(33);
  swarm.add_server(server_config({0, 5}));
  swarm.add_server(server_config({5, kBlocks}));
  auto spec = generation(5, 6, /*prompt_tokens=*/4, /*new_tokens=*/3);
  const size_t g = swarm.generate(swarm.add_client(), spec);
  swarm.run();
  const auto& session = swarm.session(g);
  ASSERT_TRUE(swarm.result(g).closed);
  EXPECT_EQ(session.length(), 4u + 3u);
  for (size_t hop = 0; hop < 2; ++hop) {
    std::vector<uint32_t> positions;
    for (const auto& [position, inputs] : session.history(hop)) positions.push_back(position);
    EXPECT_EQ(positions, (std::vector<uint32_t>{0, 4, 5, 6})) << "hop " << hop;
  }
  EXPECT_EQ(session.history(0).at(0).to_floats(), fake_prompt(6, 1, 4, kHidden));
  // Hop 1's inputs are hop 0's outputs: blocks [0, 5) of the prompt.
  FakeCache cache;
  EXPECT_EQ(session.history(1).at(0).to_floats(),
            fake_span_forward({0, 5}, 1, 4, kHidden, fake_prompt(6, 1, 4, kHidden), &cache, 0));
}

TEST(Swarm, MessagesCostTheirEncodedSizeOverTheLink) {
  VirtualSwarm swarm(34);
  const Link link{0.02, 1e6};
  swarm.set_default_link(link);
  swarm.add_server(server_config({0, kBlocks}), /*compute_s_per_token_block=*/0);
  auto spec = generation(9, 10, /*prompt_tokens=*/16, /*new_tokens=*/0);
  const size_t g = swarm.generate(swarm.add_client(), spec);
  swarm.run();
  const auto& r = swarm.result(g);
  ASSERT_TRUE(r.closed);
  const uint64_t step_bytes = StepRequest{9, 1, 0, make_sized_activation({1, 16, kHidden}), {}, {}}.encoded_size();
  const uint64_t result_bytes = StepResult{9, 1, 0, make_sized_activation({1, 16, kHidden})}.encoded_size();
  // One step, one hop: out and back, each paying latency plus its bytes over the bandwidth.
  const double expected_s = 2 * link.latency_s + (step_bytes + result_bytes) * 8.0 / link.bandwidth_bps;
  EXPECT_NEAR(r.finished_at - r.ready_at, expected_s, 1e-9);
  EXPECT_GT(step_bytes, 16u * kHidden * 4);  // the payload really is in there
}

TEST(Swarm, OpenWaitsForCacheRoomThenSucceeds) {
  VirtualSwarm swarm(35);
  // Room for exactly one session of max_length 12.
  swarm.add_server(server_config({0, kBlocks}, /*cache_tokens=*/12), /*compute_s_per_token_block=*/0.01);
  auto first = generation(1, 1, 5, 6);
  auto second = generation(2, 2, 5, 6);
  second.start_at = 0.01;
  second.session.cache_wait_timeout_s = 10;
  const size_t g1 = swarm.generate(swarm.add_client(), first);
  const size_t g2 = swarm.generate(swarm.add_client(), second);
  swarm.run();
  const auto& r1 = swarm.result(g1);
  const auto& r2 = swarm.result(g2);
  ASSERT_TRUE(r1.closed && r2.closed) << (r2.error ? r2.error->to_string() : "");
  EXPECT_GE(r2.ready_at, r1.finished_at) << "the second session must wait for the first to close";
  EXPECT_LT(r2.ready_at, r1.finished_at + 0.1);
  EXPECT_EQ(r2.outputs, reference_outputs(second));
}

TEST(Swarm, OpenThatWaitsTooLongFailsWithCacheFull) {
  VirtualSwarm swarm(36);
  const Link link{0.005, 1e9};
  swarm.set_default_link(link);
  swarm.add_server(server_config({0, kBlocks}, /*cache_tokens=*/12), /*compute_s_per_token_block=*/0.01);
  auto first = generation(1, 1, 5, 6);
  auto second = generation(2, 2, 5, 6);
  second.start_at = 0.01;
  second.session.cache_wait_timeout_s = 0.05;
  const size_t g1 = swarm.generate(swarm.add_client(), first);
  const size_t g2 = swarm.generate(swarm.add_client(), second);
  swarm.run();
  ASSERT_TRUE(swarm.result(g1).closed);
  const auto& r2 = swarm.result(g2);
  ASSERT_TRUE(r2.error.has_value());
  EXPECT_EQ(r2.error->code, ErrorCode::cache_full) << r2.error->to_string();
  // Sent at 0.01, waited 0.05 s at the server, answer back: about two latencies more.
  EXPECT_NEAR(r2.finished_at, 0.01 + 0.05 + 2 * link.latency_s, 1e-3);
  EXPECT_EQ(swarm.server(swarm.result(g1).chain[0].peer).cache_tokens_free(), 12u);
}

TEST(Swarm, ServerFreesTheCacheOfAClientThatVanished) {
  VirtualSwarm swarm(37);
  const PeerId server = swarm.add_server(server_config({0, kBlocks}, 1000));
  const PeerId client = swarm.add_client();
  swarm.generate(client, generation(1, 1, 5, 50));
  swarm.run_until(0.2);
  ASSERT_EQ(swarm.server(server).open_sessions(), 1u);
  EXPECT_LT(swarm.server(server).cache_tokens_free(), 1000u);
  swarm.crash_at(client, 0.2);
  swarm.run();
  EXPECT_EQ(swarm.server(server).open_sessions(), 0u);
  EXPECT_EQ(swarm.server(server).cache_tokens_free(), 1000u);
}

TEST(Swarm, IdleSessionIsClosedAndItsRoomGoesToAWaiter) {
  VirtualSwarm swarm(38);
  auto config = server_config({0, kBlocks}, 64);
  config.session_idle_timeout_s = 5;
  const PeerId server = swarm.add_server(config);
  // A client that opens a session and then goes silent (but stays connected).
  const PeerId idle = swarm.add_client();
  swarm.inject(idle, server, OpenSession{42, kModel, {0, kBlocks}, 64, 1, Compression::none, 0, "", std::nullopt});
  auto waiter = generation(2, 2, 5, 6);
  waiter.start_at = 1;
  waiter.session.cache_wait_timeout_s = 30;
  const size_t g = swarm.generate(swarm.add_client(), waiter);
  swarm.run();
  const auto& inbox = swarm.inbox(idle);
  ASSERT_EQ(inbox.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<SessionOpened>(inbox[0].second));
  const auto* closed = std::get_if<ErrorReply>(&inbox[1].second);
  ASSERT_NE(closed, nullptr);
  EXPECT_EQ(closed->error.code, ErrorCode::session_closed);
  const auto& r = swarm.result(g);
  ASSERT_TRUE(r.closed) << (r.error ? r.error->to_string() : "");
  EXPECT_GT(r.ready_at, 5.0);
  EXPECT_LT(r.ready_at, 5.1);
  EXPECT_EQ(swarm.server(server).cache_tokens_free(), 64u);
}

TEST(Swarm, InferenceStepOvertakesAQueuedForward) {
  VirtualSwarm swarm(39);
  const PeerId server = swarm.add_server(server_config({0, kBlocks}), /*compute_s_per_token_block=*/0.001);
  const PeerId trainer = swarm.add_client();
  auto big = [] { return make_activation({4, 32, kHidden}, std::vector<float>(4 * 32 * kHidden, 0.25f)); };
  // Two forwards of 4 x 32 tokens through 12 blocks: 1.5 s of compute each.
  swarm.inject(trainer, server,
               ForwardRequest{1, kModel, {0, kBlocks}, "", Compression::none, big(), std::nullopt, std::nullopt});
  swarm.inject(trainer, server,
               ForwardRequest{2, kModel, {0, kBlocks}, "", Compression::none, big(), std::nullopt, std::nullopt});
  auto spec = generation(3, 3, 2, 0);
  spec.start_at = 0.1;  // while the first forward runs and the second waits
  const size_t g = swarm.generate(swarm.add_client(), spec);
  swarm.run();
  EXPECT_EQ(swarm.computes_started(server),
            (std::vector<ComputeKind>{ComputeKind::forward, ComputeKind::inference, ComputeKind::forward}));
  const auto& r = swarm.result(g);
  ASSERT_TRUE(r.closed);
  EXPECT_LT(r.finished_at, 1.6 + 0.1) << "the step ran right after the running forward, not after both";
  const auto& inbox = swarm.inbox(trainer);
  ASSERT_EQ(inbox.size(), 2u);
  EXPECT_EQ(std::get<ForwardResult>(inbox[0].second).request_id, 1u);
  EXPECT_EQ(std::get<ForwardResult>(inbox[1].second).request_id, 2u);
}

TEST(Swarm, LostStepMessageEndsTheSessionWithATimeoutNamingTheServer) {
  VirtualSwarm swarm(40);
  swarm.add_server(server_config({0, 6}));
  const PeerId second = swarm.add_server(server_config({6, kBlocks}));
  int steps_to_second = 0;
  swarm.drop_if([&](PeerId, PeerId to, const Message& m, Time) {
    return to == second && std::holds_alternative<StepRequest>(m) && ++steps_to_second == 3;
  });
  auto spec = generation(1, 1, 4, 6);
  spec.session.reply_timeout_s = 2;
  const size_t g = swarm.generate(swarm.add_client(), spec);
  swarm.run();
  const auto& r = swarm.result(g);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, ErrorCode::timeout);
  EXPECT_NE(r.error->message.find(second.to_string()), std::string::npos) << r.error->message;
  EXPECT_EQ(r.outputs.size(), 2u);
  expect_prefix_of_reference(r, spec);
  for (const auto& hop : r.chain) EXPECT_EQ(swarm.server(hop.peer).open_sessions(), 0u);
}

TEST(Swarm, CrashedServerIsReportedAsUnreachableOrByTimeout) {
  for (bool notify : {true, false}) {
    for (auto point : {CrashPoint::before_reply, CrashPoint::after_reply}) {
      SCOPED_TRACE(testing::Message() << "notify " << notify << " after_reply " << (point == CrashPoint::after_reply));
      VirtualSwarm swarm(41);
      swarm.notify_peers_on_crash = notify;
      const PeerId first = swarm.add_server(server_config({0, 6}));
      const PeerId second = swarm.add_server(server_config({6, kBlocks}));
      swarm.crash_at_step(second, 3, point);
      auto spec = generation(1, 1, 4, 6);
      spec.session.reply_timeout_s = 5;
      const size_t g = swarm.generate(swarm.add_client(), spec);
      swarm.run();
      const auto& r = swarm.result(g);
      ASSERT_TRUE(r.error.has_value());
      EXPECT_EQ(r.error->code, notify ? ErrorCode::peer_unreachable : ErrorCode::timeout) << r.error->to_string();
      EXPECT_NE(r.error->message.find(second.to_string()), std::string::npos) << r.error->message;
      // Step 3's output is delivered only when the server crashed after replying.
      EXPECT_EQ(r.outputs.size(), point == CrashPoint::after_reply ? 3u : 2u);
      expect_prefix_of_reference(r, spec);
      EXPECT_LT(r.finished_at, notify ? 1.0 : 6.0);
      EXPECT_EQ(swarm.server(first).open_sessions(), 0u);
    }
  }
}

// A randomized swarm of faults (VOPR-style safety): whatever goes wrong, every generation ends,
// every output it produced is the right one, errors are typed, and once the dust settles the
// surviving servers hold no session and have their whole cache free.
// Under every policy: with recovery, some runs that failed now succeed, but no cache may leak.
TEST(Swarm, RandomFaultsNeverProduceAWrongOutputOrLeakACache) {
  for (RecoveryPolicy policy :
       {RecoveryPolicy::none, RecoveryPolicy::replay, RecoveryPolicy::restart, RecoveryPolicy::cacheless}) {
    SCOPED_TRACE(testing::Message() << "recovery " << to_string(policy));
    const uint64_t seed = test_seed(42);
    Rng rng(seed);
    int failed = 0, succeeded = 0;
    for (int run = 0; run < 150; ++run) {
      SCOPED_TRACE(testing::Message() << "run " << run << " (seed " << seed << ")");
      VirtualSwarm swarm(rng.next_u64());
      swarm.notify_peers_on_crash = rng.bernoulli(0.5);
      swarm.set_drop_probability(rng.bernoulli(0.5) ? rng.uniform(0, 0.03) : 0);
      std::vector<PeerId> servers;
      for (BlockSpan span : {BlockSpan{0, 4}, BlockSpan{4, 8}, BlockSpan{8, kBlocks}}) {
        auto config = server_config(span, 40 + rng.below(60));
        config.session_idle_timeout_s = 20;
        // Half the runs batch concurrent steps (continuous batching must not change recovery).
        config.max_batch = rng.bernoulli(0.5) ? 1 : 2 + static_cast<uint32_t>(rng.below(7));
        config.batch_wait_s = rng.bernoulli(0.25) ? rng.uniform(0, 0.01) : 0;
        servers.push_back(swarm.add_server(config, rng.uniform(0, 0.01)));
      }
      const PeerId doomed = servers[rng.below(servers.size())];
      if (rng.bernoulli(0.5)) {
        swarm.crash_at_step(doomed, 1 + rng.below(30),
                            rng.bernoulli(0.5) ? CrashPoint::after_reply : CrashPoint::before_reply);
      }
      std::vector<std::pair<size_t, GenerationSpec>> runs;
      for (int c = 0; c < 4; ++c) {
        auto spec = generation(rng.next_u64(), rng.next_u64(), 1 + static_cast<uint32_t>(rng.below(8)),
                               1 + static_cast<uint32_t>(rng.below(10)));
        spec.start_at = rng.uniform(0, 0.5);
        spec.session.reply_timeout_s = 3;
        spec.session.cache_wait_timeout_s = rng.uniform(0, 2);
        spec.session.recovery = policy;
        runs.emplace_back(swarm.generate(swarm.add_client(), spec), spec);
      }
      swarm.run();
      for (const auto& [g, spec] : runs) {
        const auto& r = swarm.result(g);
        ASSERT_TRUE(r.finished());
        expect_prefix_of_reference(r, spec);
        if (r.error) {
          ++failed;
          EXPECT_FALSE(r.error->message.empty());
        } else {
          ++succeeded;
          ASSERT_EQ(r.outputs.size(), spec.new_tokens + 1);
        }
      }
      for (PeerId s : servers) {
        if (!swarm.alive(s)) continue;
        EXPECT_EQ(swarm.server(s).open_sessions(), 0u);
        EXPECT_EQ(swarm.server(s).waiting_opens(), 0u);
        EXPECT_EQ(swarm.server(s).cache_tokens_free(), swarm.server(s).config().cache_tokens);
      }
    }
    // The mix must exercise both outcomes to mean anything.
    fmt::print("recovery {}: {} generations failed, {} succeeded\n", to_string(policy), failed, succeeded);
    EXPECT_GT(failed, 20);
    EXPECT_GT(succeeded, 100);
  }
}

TEST(Swarm, SlowRepliesAreWaitedForUntilTheDeadline) {
  for (double timeout_s : {30.0, 5.0}) {
    SCOPED_TRACE(testing::Message() << "reply timeout " << timeout_s);
    VirtualSwarm swarm(43);
    swarm.add_server(server_config({0, 6}));
    const PeerId second = swarm.add_server(server_config({6, kBlocks}));
    int replies = 0;
    swarm.delay_if([&](PeerId from, PeerId, const Message& m,
                       Time) { return from == second && std::holds_alternative<StepResult>(m) && ++replies == 2; },
                   10.0);
    auto spec = generation(1, 1, 4, 4);
    spec.session.reply_timeout_s = timeout_s;
    const size_t g = swarm.generate(swarm.add_client(), spec);
    swarm.run();
    const auto& r = swarm.result(g);
    expect_prefix_of_reference(r, spec);
    if (timeout_s > 10) {
      ASSERT_TRUE(r.closed);
      EXPECT_EQ(r.outputs.size(), 5u);
      EXPECT_GT(r.finished_at, 10.0);
    } else {
      ASSERT_TRUE(r.error.has_value());
      EXPECT_EQ(r.error->code, ErrorCode::timeout);
      EXPECT_EQ(r.outputs.size(), 1u);
    }
  }
}

TEST(Swarm, SameSeedSameRunBitForBit) {
  const uint64_t seed = test_seed(44);
  auto run = [&] {
    Rng rng(seed);
    VirtualSwarm swarm(seed);
    swarm.set_drop_probability(0.02);
    swarm.add_server(server_config({0, 5}, 60), 0.003);
    swarm.add_server(server_config({5, kBlocks}, 60), 0.002);
    std::vector<size_t> ids;
    for (int c = 0; c < 6; ++c) {
      auto spec = generation(rng.next_u64(), rng.next_u64(), 3, 8);
      spec.start_at = rng.uniform(0, 0.2);
      spec.session.reply_timeout_s = 1;
      ids.push_back(swarm.generate(swarm.add_client(), spec));
    }
    swarm.run();
    std::vector<std::tuple<double, double, size_t, int>> trace;
    for (size_t g : ids) {
      const auto& r = swarm.result(g);
      trace.emplace_back(r.ready_at, r.finished_at, r.outputs.size(), r.error ? static_cast<int>(r.error->code) : 0);
    }
    return std::make_tuple(trace, swarm.bytes_sent(), swarm.messages_dropped(), swarm.now());
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace bouquet::test

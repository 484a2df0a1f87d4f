// A client holds announced speeds to account: what it measured of a server's one-token steps
// overrides a claim the server does not live up to, and routing follows.
#include "core/server_speeds.h"

#include <gtest/gtest.h>

#include "core/inference_session.h"
#include "core/min_latency_route.h"

namespace bouquet::core {
namespace {

const PeerId kLiar{1}, kHonestA{2}, kHonestB{3};

ServerRecord server(PeerId peer, uint32_t begin, uint32_t end, double inference_rps) {
  ServerRecord r;
  r.peer = peer;
  r.span = BlockSpan{begin, end};
  r.model_id = "m";
  r.inference_rps = inference_rps;
  r.throughput_rps = inference_rps;
  r.cache_tokens_free = 1 << 20;
  r.expires_at = 1e9;
  return r;
}

TEST(ServerSpeeds, AClaimStandsUntilEnoughStepsShowItFarFromTheTruth) {
  RttEstimator rtt;
  rtt.observe(kLiar, 0.05);
  ServerSpeeds speeds(rtt);
  const double claimed_block_s = 1.0 / 1e300;
  speeds.observe_step(0, kLiar, 8, 0.05 + 8 * 0.1);  // 0.1 s per block, claims ~0
  speeds.observe_step(0, kLiar, 8, 0.05 + 8 * 0.1);
  EXPECT_FALSE(speeds.measured_block_s(0, kLiar)) << "two steps are not enough to overrule a claim";
  EXPECT_DOUBLE_EQ(speeds.block_cost_s(0, kLiar, claimed_block_s, 1), claimed_block_s);
  speeds.observe_step(0, kLiar, 8, 0.05 + 8 * 0.1);
  ASSERT_TRUE(speeds.measured_block_s(0, kLiar));
  EXPECT_NEAR(*speeds.measured_block_s(0, kLiar), 0.1, 1e-12) << "the round trip is not the server's";
  EXPECT_TRUE(speeds.claim_dropped(0, kLiar, claimed_block_s));
  EXPECT_NEAR(speeds.block_cost_s(0, kLiar, claimed_block_s, 1), 0.1, 1e-12);
}

TEST(ServerSpeeds, AMeasurementWithoutNewSamplesIsForgottenAfterMaxAge) {
  RttEstimator rtt;
  ServerSpeeds speeds(rtt);
  for (int i = 0; i < 3; ++i) speeds.observe_step(100, kLiar, 1, rtt.rtt_s(kLiar) + 1.0);
  EXPECT_TRUE(speeds.claim_dropped(100 + speeds.config().max_age_s, kLiar, 0.01));
  EXPECT_FALSE(speeds.claim_dropped(101 + speeds.config().max_age_s, kLiar, 0.01))
      << "a server once slow (busy, perhaps) gets its claim back when nobody measured it lately";
}

TEST(ServerSpeeds, AnHonestServerSomewhatSlowerThanItsClaimKeepsIt) {
  RttEstimator rtt;
  ServerSpeeds speeds(rtt);
  // Claims 0.01 s per block; measured 0.03 (queueing, the wire): within the tolerance of 4.
  for (int i = 0; i < 5; ++i) speeds.observe_step(0, kHonestA, 4, rtt.rtt_s(kHonestA) + 4 * 0.03);
  EXPECT_FALSE(speeds.claim_dropped(0, kHonestA, 0.01));
  EXPECT_DOUBLE_EQ(speeds.block_cost_s(0, kHonestA, 0.01, 1), 0.01);
  // A server that announced nothing is charged what was measured rather than the default.
  EXPECT_NEAR(speeds.block_cost_s(0, kHonestA, 0, 1), 0.03, 1e-12);
  // Never measured: the claim, or the default for no claim.
  EXPECT_DOUBLE_EQ(speeds.block_cost_s(0, kHonestB, 0, 1), 1);
}

TEST(ServerSpeeds, RoutingStopsChoosingAServerThatLiesAboutItsSpeed) {
  // The liar holds every block and claims 1e300 blocks/s; two honest servers split the blocks
  // at 100 blocks/s. Believed, the liar's one hop wins; measured at 1 s per block, it loses.
  const std::vector<ServerRecord> records{server(kLiar, 0, 8, 1e300), server(kHonestA, 0, 4, 100),
                                          server(kHonestB, 4, 8, 100)};
  RttEstimator rtt;
  for (const auto& r : records) rtt.observe(r.peer, 0.05);
  const PlanRoute plan{1, "m", BlockSpan{0, 8}, {}, 0};
  ServerSpeeds speeds(rtt);
  MinLatencyConfig config;
  config.measured = &speeds;
  EXPECT_EQ(plan_chain_min_latency(records, plan, 0, rtt, config).value(), (Chain{{kLiar, {0, 8}}}));
  for (int i = 0; i < 3; ++i) speeds.observe_step(0, kLiar, 8, 0.05 + 8 * 1.0);
  const Chain honest{{kHonestA, {0, 4}}, {kHonestB, {4, 8}}};
  EXPECT_EQ(plan_chain_min_latency(records, plan, 0, rtt, config).value(), honest);
  EXPECT_NEAR(chain_latency_s(honest, records, 0, rtt, config), 2 * 0.05 + 8 * 0.01, 1e-12);
}

TEST(ServerSpeeds, TheInferenceSessionTimesEachOneTokenStepOnEachHop) {
  RttEstimator rtt;
  const PeerId first{10}, second{20};
  rtt.observe(first, 0.1);
  rtt.observe(second, 0.1);
  ServerSpeeds speeds(rtt);
  InferenceSessionConfig c;
  c.session_id = 1000;
  c.model_id = "m";
  c.num_blocks = 8;
  c.hidden_size = 4;
  c.max_length = 16;
  c.speeds = &speeds;
  InferenceSession session(c);
  std::vector<Effect> out;
  Time now = 0;
  auto sent_step = [&] {
    for (const auto& e : out) {
      if (auto* s = std::get_if<SendMessage>(&e)) {
        if (auto* m = std::get_if<StepRequest>(&s->message)) return std::make_pair(s->to, *m);
      }
    }
    ADD_FAILURE() << "no step sent";
    return std::make_pair(PeerId{}, StepRequest{});
  };
  session.handle(now, OpenRequested{}, out);
  ASSERT_TRUE(std::holds_alternative<PlanRoute>(out.at(0)));
  const auto route_id = std::get<PlanRoute>(out.at(0)).route_id;
  out.clear();
  session.handle(now, RoutePlanned{route_id, Chain{{first, {0, 3}}, {second, {3, 8}}}}, out);
  std::vector<OpenSession> opens;
  for (const auto& e : out) {
    if (auto* s = std::get_if<SendMessage>(&e)) opens.push_back(std::get<OpenSession>(s->message));
  }
  for (size_t i = 0; i < opens.size(); ++i) {
    out.clear();
    session.handle(now, MessageReceived{i == 0 ? first : second, SessionOpened{opens[i].session_id, std::nullopt}},
                   out);
  }
  ASSERT_EQ(session.phase(), InferenceSession::Phase::ready);
  // A 3-token prompt, then three one-token steps: the first hop answers in 0.4 s (0.1 s of it the
  // round trip, 3 blocks), the second in 0.6 s (5 blocks).
  for (uint32_t tokens : {3u, 1u, 1u, 1u}) {
    out.clear();
    const Activation input = make_activation({1, tokens, 4}, std::vector<float>(tokens * 4, 1.0f));
    session.handle(now, StepRequested{input, std::nullopt}, out);
    for (double took : {0.4, 0.6}) {
      auto [peer, request] = sent_step();
      now += took;
      out.clear();
      const StepResult result{request.session_id, request.step_id, request.start_position, request.hidden_states};
      session.handle(now, MessageReceived{peer, result}, out);
    }
  }
  EXPECT_EQ(speeds.samples(first), 3u) << "the prompt's step is not a one-token step";
  EXPECT_NEAR(*speeds.measured_block_s(now, first), 0.1, 1e-9);
  EXPECT_NEAR(*speeds.measured_block_s(now, second), 0.1, 1e-9);
}

}  // namespace
}  // namespace bouquet::core

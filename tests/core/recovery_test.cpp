// Recovery in whole swarms: seeded fault drills (support/fault_drill.h) under every policy, and
// the recovery scenarios told one by one.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "core/min_latency_route.h"
#include "core/positions.h"
#include "tests/core/support/fault_drill.h"
#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "fake-12/0123abcd";

BlockServerConfig server_config(BlockSpan span, double inference_rps) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.span = span;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 20;
  c.inference_rps = inference_rps;
  return c;
}

GenerationSpec generation(uint32_t prompt_tokens, uint32_t new_tokens) {
  GenerationSpec g;
  g.session.session_id = 4242;
  g.session.model_id = kModel;
  g.session.num_blocks = kBlocks;
  g.session.hidden_size = kHidden;
  g.session.max_length = prompt_tokens + new_tokens + 1;
  g.session.reply_timeout_s = 2;
  g.prompt_tokens = prompt_tokens;
  g.new_tokens = new_tokens;
  g.prompt_seed = 99;
  return g;
}

// A swarm routing by min latency (faster servers first) whose StepRequest tokens per server are
// counted.
struct CountingSwarm {
  VirtualSwarm swarm{5};
  std::map<PeerId, uint64_t> tokens_to;
  CountingSwarm() {
    swarm.set_routing(Routing::min_latency);
    swarm.drop_if([this](PeerId, PeerId to, const Message& m, Time) {
      if (auto* step = std::get_if<StepRequest>(&m)) tokens_to[to] += token_count(step->hidden_states);
      return false;
    });
  }
};

void print(const DrillStats& s) {
  fmt::print(
      "{} drills, {} faults injected, {} recoveries ({} in drills with two or more, {} replacements "
      "that failed too, {} by several servers), {} positions replayed\n",
      s.drills, s.faults, s.recoveries, s.drills_recovered_twice, s.replacements_failed, s.multi_server_replacements,
      s.positions_replayed);
}

TEST(Recovery, ASixtyFourTokenGenerationLosesTheSecondSpansServerAndItsSpareTakesOver) {
  for (auto point : {CrashPoint::before_reply, CrashPoint::after_reply}) {
    SCOPED_TRACE(point == CrashPoint::after_reply ? "after reply" : "before reply");
    CountingSwarm s;
    const PeerId first = s.swarm.add_server(server_config({0, 6}, 1000));
    const PeerId second = s.swarm.add_server(server_config({6, kBlocks}, 1000));
    const PeerId spare = s.swarm.add_server(server_config({6, kBlocks}, 100));
    s.swarm.crash_at_step(second, 30, point);
    const auto spec = generation(8, 64);
    const size_t g = s.swarm.generate(s.swarm.add_client(), spec);
    s.swarm.run();
    const auto& r = s.swarm.result(g);
    ASSERT_TRUE(r.closed && !r.error) << (r.error ? r.error->to_string() : "unfinished");
    EXPECT_EQ(r.outputs, reference_outputs(spec));
    const auto& recoveries = s.swarm.session(g).recoveries();
    ASSERT_EQ(recoveries.size(), 1u);
    EXPECT_EQ(recoveries[0].span, (BlockSpan{6, kBlocks}));
    EXPECT_EQ(recoveries[0].failed_peer, second);
    EXPECT_EQ(recoveries[0].replacement, (Chain{{spare, {6, kBlocks}}}));
    EXPECT_TRUE(recoveries[0].succeeded);
    EXPECT_LT(recoveries[0].duration_s(), 1.0);
    // Its 30th step is position 36 (the 8-token prompt was the first): 36 positions came before
    // it. Crashing after its reply, the server interrupts the next step instead.
    const uint32_t before = point == CrashPoint::after_reply ? 37 : 36;
    EXPECT_EQ(recoveries[0].positions_replayed, before);
    const uint64_t total = 8 + 64;
    EXPECT_EQ(s.tokens_to[first], total) << "the first span never replays anything";
    EXPECT_EQ(s.tokens_to[spare], total) << "the spare gets every position once";
  }
}

TEST(Recovery, WithNoServerLeftForASpanTheSessionFailsAfterTheDeadlineWithAClearError) {
  CountingSwarm s;
  const PeerId first = s.swarm.add_server(server_config({0, 6}, 1000));
  const PeerId second = s.swarm.add_server(server_config({6, kBlocks}, 1000));
  s.swarm.crash_at_step(second, 5, CrashPoint::before_reply);
  const size_t g = s.swarm.generate(s.swarm.add_client(), generation(4, 16));
  s.swarm.run();
  const auto& r = s.swarm.result(g);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, ErrorCode::no_route);
  EXPECT_NE(r.error->message.find("[6, 12)"), std::string::npos) << r.error->message;
  EXPECT_NE(r.error->message.find(second.to_string()), std::string::npos) << r.error->message;
  const auto& recovery = s.swarm.session(g).recoveries().back();
  // The dead server was tried again when its ban ended (15 s, then 30 s): still dead, so 60 s
  // after the crash the session gives up.
  EXPECT_NEAR(r.finished_at, recovery.failed_at + 60, 5.0);
  EXPECT_GE(s.swarm.session(g).recoveries().size(), 2u);
  EXPECT_EQ(s.swarm.server(first).open_sessions(), 0u);
}

TEST(Recovery, TheOnlyServerOfASpanBeingSlowOnceIsBannedThenUsedAgain) {
  CountingSwarm s;
  s.swarm.add_server(server_config({0, 6}, 1000));
  const PeerId second = s.swarm.add_server(server_config({6, kBlocks}, 1000));
  int replies = 0;
  s.swarm.delay_if([&](PeerId from, PeerId, const Message& m,
                       Time) { return from == second && std::holds_alternative<StepResult>(m) && ++replies == 4; },
                   5.0);
  const auto spec = generation(4, 10);
  const size_t g = s.swarm.generate(s.swarm.add_client(), spec);
  s.swarm.run();
  const auto& r = s.swarm.result(g);
  ASSERT_TRUE(r.closed && !r.error) << (r.error ? r.error->to_string() : "unfinished");
  EXPECT_EQ(r.outputs, reference_outputs(spec));
  const auto& recoveries = s.swarm.session(g).recoveries();
  ASSERT_EQ(recoveries.size(), 1u);
  EXPECT_EQ(recoveries[0].replacement, (Chain{{second, {6, kBlocks}}}));
  EXPECT_GT(recoveries[0].duration_s(), 15.0) << "it waited for the ban to end";
  EXPECT_LT(recoveries[0].duration_s(), 16.0);
}

TEST(Recovery, AThousandFaultDrillsEndWithTheFaultFreeOutputReplayingOnlyFailedSpans) {
  const uint64_t seed = test_seed(7000);
  DrillStats stats;
  run_fault_drills(seed, 1000, RecoveryPolicy::replay, stats);
  print(stats);
  if (stats.drills < 1000) return;  // BOUQUET_DRILLS asked for a few
  // The drills must really exercise what they claim to.
  EXPECT_GT(stats.recoveries, 700u);
  EXPECT_GT(stats.drills_recovered_twice, 100u);
  EXPECT_GT(stats.replacements_failed, 50u);
  EXPECT_GT(stats.multi_server_replacements, 100u);
}

TEST(Recovery, RestartGivesTheFaultFreeOutputToo) {
  const uint64_t seed = test_seed(8000);
  DrillStats stats;
  run_fault_drills(seed, 300, RecoveryPolicy::restart, stats);
  print(stats);
  if (stats.drills == 300) EXPECT_GT(stats.recoveries, 200u);
}

TEST(Recovery, RestartFromScratchGivesTheFaultFreeOutputToo) {
  const uint64_t seed = test_seed(8500);
  DrillStats stats;
  run_fault_drills(seed, 300, RecoveryPolicy::restart_from_scratch, stats);
  print(stats);
  if (stats.drills == 300) EXPECT_GT(stats.recoveries, 200u);
}

TEST(Recovery, CachelessGivesTheFaultFreeOutputToo) {
  const uint64_t seed = test_seed(9000);
  DrillStats stats;
  run_fault_drills(seed, 300, RecoveryPolicy::cacheless, stats);
  print(stats);
  if (stats.drills == 300) EXPECT_GT(stats.recoveries, 200u);
}

}  // namespace
}  // namespace bouquet::test

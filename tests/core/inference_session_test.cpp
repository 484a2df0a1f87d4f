// The client session driven by hand: what it sends, what it keeps, how it fails.
#include "core/inference_session.h"
#include "tests/core/support/effects.h"

#include <gtest/gtest.h>

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 4;
const PeerId kFirst{10}, kSecond{20};

struct Harness {
  InferenceSession session;
  Time now = 0;
  std::vector<Effect> effects;

  explicit Harness(InferenceSessionConfig config) : session(std::move(config)) {}
  std::vector<Effect>& input(const Input& in) {
    effects.clear();
    session.handle(now, in, effects);
    return effects;
  }
  template <class T>
  std::vector<T> all() const {
    return test::effects_of<T>(effects);
  }
  template <class M>
  std::vector<std::pair<PeerId, M>> sent() const {
    return test::sent_of<M>(effects);
  }
};

InferenceSessionConfig config() {
  InferenceSessionConfig c;
  c.session_id = 1000;
  c.model_id = "m";
  c.num_blocks = 8;
  c.hidden_size = kHidden;
  c.max_length = 16;
  c.compression = Compression::int8_blockwise;
  c.cache_wait_timeout_s = 5;
  c.reply_timeout_s = 2;
  // These tests are about how failures surface; inference_session_recovery_test.cpp covers
  // what the default policy does instead.
  c.recovery = RecoveryPolicy::none;
  return c;
}

Activation hidden(uint32_t tokens, float value) {
  return make_activation({1, tokens, kHidden}, std::vector<float>(tokens * kHidden, value));
}

// Opens over two hops: [0, 3) on kFirst and [3, 8) on kSecond.
Harness opened() {
  Harness h(config());
  h.input(OpenRequested{});
  const auto plan = h.all<PlanRoute>().at(0);
  h.input(RoutePlanned{plan.route_id, Chain{{kFirst, {0, 3}}, {kSecond, {3, 8}}}});
  for (const auto& [peer, open] : h.sent<OpenSession>())
    h.input(MessageReceived{peer, SessionOpened{open.session_id, std::nullopt}});
  return h;
}

TEST(InferenceSession, PlansAllBlocksThenOpensEveryHopWithItsOwnSessionId) {
  Harness h(config());
  h.input(OpenRequested{});
  auto plans = h.all<PlanRoute>();
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(plans[0].blocks, (BlockSpan{0, 8}));
  EXPECT_EQ(plans[0].model_id, "m");
  h.input(RoutePlanned{plans[0].route_id, Chain{{kFirst, {0, 3}}, {kSecond, {3, 8}}}});
  auto opens = h.sent<OpenSession>();
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[0].first, kFirst);
  EXPECT_EQ(opens[0].second.span, (BlockSpan{0, 3}));
  EXPECT_EQ(opens[1].second.span, (BlockSpan{3, 8}));
  EXPECT_NE(opens[0].second.session_id, opens[1].second.session_id);
  EXPECT_EQ(opens[0].second.max_length, 16u);
  EXPECT_EQ(opens[0].second.reply_compression, Compression::int8_blockwise);
  EXPECT_EQ(opens[0].second.cache_wait_timeout_s, 5.0);
  EXPECT_EQ(h.all<SetTimer>().at(0).at, 7.0);  // cache wait + reply timeout
  h.input(MessageReceived{kFirst, SessionOpened{opens[0].second.session_id, std::nullopt}});
  EXPECT_TRUE(h.all<SessionReady>().empty());
  h.input(MessageReceived{kSecond, SessionOpened{opens[0].second.session_id, std::nullopt}});  // wrong id: ignored
  EXPECT_TRUE(h.all<SessionReady>().empty());
  h.input(MessageReceived{kSecond, SessionOpened{opens[1].second.session_id, std::nullopt}});
  ASSERT_EQ(h.all<SessionReady>().size(), 1u);
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::ready);
}

TEST(InferenceSession, StepGoesThroughTheHopsInOrderAndEachInputIsKept) {
  Harness h = opened();
  h.input(StepRequested{hidden(3, 1.0f), std::nullopt});
  auto to_first = h.sent<StepRequest>();
  ASSERT_EQ(to_first.size(), 1u);
  EXPECT_EQ(to_first[0].first, kFirst);
  EXPECT_EQ(to_first[0].second.start_position, 0u);
  EXPECT_EQ(to_first[0].second.hidden_states.compression, Compression::int8_blockwise);
  const auto& s1 = to_first[0].second;
  h.input(MessageReceived{kFirst, StepResult{s1.session_id, s1.step_id, 0, hidden(3, 2.0f)}});
  auto to_second = h.sent<StepRequest>();
  ASSERT_EQ(to_second.size(), 1u);
  EXPECT_EQ(to_second[0].first, kSecond);
  EXPECT_EQ(to_second[0].second.hidden_states.to_floats(), hidden(3, 2.0f).to_floats());
  const auto& s2 = to_second[0].second;
  h.input(MessageReceived{kSecond, StepResult{s2.session_id, s2.step_id, 0, hidden(3, 3.0f)}});
  auto done = h.all<StepDone>();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].outputs.to_floats(), hidden(3, 3.0f).to_floats());
  EXPECT_EQ(h.session.length(), 3u);
  EXPECT_EQ(h.session.history(0).at(0).to_floats(), hidden(3, 1.0f).to_floats());
  EXPECT_EQ(h.session.history(1).at(0).to_floats(), hidden(3, 2.0f).to_floats());
}

TEST(InferenceSession, RewindDropsHistoryFromThatPositionOn) {
  Harness h = opened();
  auto run_step = [&](Activation x, std::optional<uint32_t> start) {
    h.input(StepRequested{std::move(x), start});
    for (int hop = 0; hop < 2; ++hop) {
      auto [peer, s] = h.sent<StepRequest>().at(0);
      h.input(MessageReceived{peer, StepResult{s.session_id, s.step_id, s.start_position, s.hidden_states}});
    }
  };
  run_step(hidden(4, 1.0f), std::nullopt);
  run_step(hidden(1, 2.0f), std::nullopt);
  run_step(hidden(1, 3.0f), std::nullopt);
  EXPECT_EQ(h.session.length(), 6u);
  h.input(StepRequested{hidden(1, 9.0f), 4u});
  EXPECT_EQ(h.sent<StepRequest>().at(0).second.start_position, 4u);
  std::vector<uint32_t> kept;
  for (const auto& [position, x] : h.session.history(1)) kept.push_back(position);
  EXPECT_EQ(kept, (std::vector<uint32_t>{0}));  // hop 1 has not seen the new step yet
  kept.clear();
  for (const auto& [position, x] : h.session.history(0)) kept.push_back(position);
  EXPECT_EQ(kept, (std::vector<uint32_t>{0, 4}));
}

TEST(InferenceSession, ErrorReplyFailsTheSessionNamingTheServerAndClosesEveryHop) {
  Harness h = opened();
  h.input(StepRequested{hidden(2, 1.0f), std::nullopt});
  const auto s = h.sent<StepRequest>().at(0).second;
  h.input(MessageReceived{kFirst, ErrorReply{s.session_id, s.step_id + 5, Error{ErrorCode::bad_position, "old"}}});
  EXPECT_TRUE(h.all<SessionFailed>().empty()) << "an error for another step is stale";
  h.input(MessageReceived{kFirst, ErrorReply{s.session_id, s.step_id, Error{ErrorCode::compute_failed, "oom"}}});
  auto failed = h.all<SessionFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].error.code, ErrorCode::compute_failed);
  EXPECT_NE(failed[0].error.message.find(kFirst.to_string()), std::string::npos);
  EXPECT_NE(failed[0].error.message.find("[0, 3)"), std::string::npos);
  EXPECT_EQ(h.sent<CloseSession>().size(), 2u);
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::failed);
  h.input(MessageReceived{kFirst, StepResult{s.session_id, s.step_id, 0, hidden(2, 1.0f)}});
  EXPECT_TRUE(h.effects.empty()) << "a failed session ignores late replies";
}

TEST(InferenceSession, NoReplyInTimeFailsWithTimeout) {
  Harness h = opened();
  h.now = 10;
  h.input(StepRequested{hidden(1, 1.0f), std::nullopt});
  const SetTimer deadline = h.all<SetTimer>().at(0);
  EXPECT_EQ(deadline.at, 12.0);
  h.now = 12;
  h.input(TimerFired{deadline.timer});
  auto failed = h.all<SessionFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].error.code, ErrorCode::timeout);
}

TEST(InferenceSession, ReplyOfTheWrongShapeIsABadReply) {
  Harness h = opened();
  h.input(StepRequested{hidden(2, 1.0f), std::nullopt});
  const auto s = h.sent<StepRequest>().at(0).second;
  h.input(MessageReceived{kFirst, StepResult{s.session_id, s.step_id, 0, hidden(3, 1.0f)}});
  ASSERT_EQ(h.all<SessionFailed>().size(), 1u);
  EXPECT_EQ(h.all<SessionFailed>()[0].error.code, ErrorCode::bad_reply);
}

TEST(InferenceSession, LostPeerAndMissingRouteAreTypedFailures) {
  Harness h = opened();
  h.input(PeerUnreachable{PeerId{99}, "not ours"});
  EXPECT_TRUE(h.effects.empty());
  h.input(PeerUnreachable{kSecond, "connection reset"});
  ASSERT_EQ(h.all<SessionFailed>().size(), 1u);
  EXPECT_EQ(h.all<SessionFailed>()[0].error.code, ErrorCode::peer_unreachable);

  Harness no_route(config());
  no_route.input(OpenRequested{});
  const auto plan = no_route.all<PlanRoute>().at(0);
  no_route.input(RoutePlanned{plan.route_id, Error{ErrorCode::no_route, "nobody holds block 5"}});
  ASSERT_EQ(no_route.all<SessionFailed>().size(), 1u);
  EXPECT_EQ(no_route.all<SessionFailed>()[0].error.code, ErrorCode::no_route);

  Harness gap(config());
  gap.input(OpenRequested{});
  gap.input(RoutePlanned{gap.all<PlanRoute>().at(0).route_id, Chain{{kFirst, {0, 3}}, {kSecond, {4, 8}}}});
  ASSERT_EQ(gap.all<SessionFailed>().size(), 1u);
  EXPECT_TRUE(gap.sent<OpenSession>().empty());
}

TEST(InferenceSession, CloseSendsCloseToEveryHop) {
  Harness h = opened();
  h.input(CloseRequested{});
  auto closes = h.sent<CloseSession>();
  ASSERT_EQ(closes.size(), 2u);
  EXPECT_NE(closes[0].second.session_id, closes[1].second.session_id);
  EXPECT_EQ(h.all<SessionClosed>().size(), 1u);
}

}  // namespace
}  // namespace bouquet::core

// Recovery in the client session, driven by hand: what it bans, what it asks the planner, what
// it replays to whom, what it never sends again, when it gives up.
#include "core/inference_session.h"

#include <gtest/gtest.h>

#include "core/positions.h"
#include "tests/core/support/effects.h"

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 4;
const PeerId kA{10}, kB{20}, kC{30}, kD{40}, kE{50};

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
  // Answers every OpenSession the last input sent; `effects` then holds all that caused.
  void open_all() {
    for (auto opens = sent<OpenSession>(); !opens.empty(); opens = sent<OpenSession>()) {
      std::vector<Effect> caused;
      for (const auto& [peer, open] : opens) {
        input(MessageReceived{peer, SessionOpened{open.session_id, std::nullopt}});
        caused.insert(caused.end(), effects.begin(), effects.end());
      }
      effects = std::move(caused);
    }
  }
  // Replies to the one StepRequest the last input sent: a server adding `shift` to each value.
  std::pair<PeerId, StepRequest> reply(float shift = 1) {
    const auto steps = sent<StepRequest>();
    EXPECT_EQ(steps.size(), 1u);
    const auto [peer, s] = steps.at(0);
    auto values = s.hidden_states.to_floats();
    for (float& v : values) v += shift;
    input(MessageReceived{
        peer, StepResult{s.session_id, s.step_id, s.start_position, make_activation(s.hidden_states.shape, values)}});
    return {peer, s};
  }
};

InferenceSessionConfig config() {
  InferenceSessionConfig c;
  c.session_id = 1000;
  c.model_id = "m";
  c.num_blocks = 8;
  c.hidden_size = kHidden;
  c.max_length = 16;
  c.cache_wait_timeout_s = 5;
  c.reply_timeout_s = 2;
  return c;
}

Activation hidden(uint32_t tokens, float value) {
  return make_activation({1, tokens, kHidden}, std::vector<float>(tokens * kHidden, value));
}

// Open over A [0, 3), B [3, 6), C [6, 8), then run a 3-token prompt and one more token.
Harness running(InferenceSessionConfig c = config()) {
  Harness h(std::move(c));
  h.input(OpenRequested{});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kA, {0, 3}}, {kB, {3, 6}}, {kC, {6, 8}}}});
  h.open_all();
  EXPECT_EQ(h.all<SessionReady>().size(), 1u);
  for (uint32_t tokens : {3u, 1u}) {
    h.input(StepRequested{hidden(tokens, 1.0f), std::nullopt});
    for (int hop = 0; hop < 3; ++hop) h.reply();
    EXPECT_EQ(h.all<StepDone>().size(), 1u);
  }
  return h;
}

TEST(InferenceSessionRecovery, ReplaysOnlyTheFailedSpansHistoryToItsReplacementsAndGoesOn) {
  Harness h = running();
  h.now = 10;
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();  // A
  // B's inputs: the prompt, one token, and the interrupted step (A's output, 2 + 1).
  const std::vector<float> b_history =
      concat_tokens(
          std::vector<Activation>{h.session.history(1).at(0), h.session.history(1).at(3), h.session.history(1).at(4)})
          .to_floats();
  ASSERT_EQ(b_history.size(), 5 * kHidden);
  EXPECT_EQ(h.session.history(1).at(4).to_floats(), std::vector<float>(kHidden, 3.0f));
  ASSERT_EQ(h.sent<StepRequest>().at(0).first, kB);
  h.now = 10.5;
  h.input(PeerUnreachable{kB, "connection reset"});
  EXPECT_EQ(h.sent<CloseSession>().size(), 1u);
  EXPECT_TRUE(h.sent<StepRequest>().empty());
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{3, 6}));
  EXPECT_EQ(plan.avoid, (std::vector<PeerId>{kB}));
  EXPECT_EQ(plan.cache_tokens_needed, 16u);
  EXPECT_TRUE(h.session.bans().banned(kB, 10.5 + 14.9));

  h.now = 11;
  h.input(RoutePlanned{plan.route_id, Chain{{kD, {3, 5}}, {kE, {5, 6}}}});
  auto opens = h.sent<OpenSession>();
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[0].second.span, (BlockSpan{3, 5}));
  EXPECT_EQ(opens[1].second.span, (BlockSpan{5, 6}));
  EXPECT_GE(opens[0].second.session_id, 1003u) << "replacements get fresh session ids";
  h.input(MessageReceived{kD, SessionOpened{opens[0].second.session_id, std::nullopt}});
  // D gets B's whole history, old positions and the interrupted step, in one message.
  auto to_d = h.sent<StepRequest>();
  ASSERT_EQ(to_d.size(), 1u);
  EXPECT_EQ(to_d[0].first, kD);
  EXPECT_EQ(to_d[0].second.start_position, 0u);
  EXPECT_EQ(to_d[0].second.hidden_states.to_floats(), b_history);
  h.reply(10);
  EXPECT_TRUE(h.sent<StepRequest>().empty()) << "E has not opened yet";
  h.input(MessageReceived{kE, SessionOpened{opens[1].second.session_id, std::nullopt}});
  auto to_e = h.sent<StepRequest>();
  ASSERT_EQ(to_e.size(), 1u);
  EXPECT_EQ(to_e[0].second.start_position, 0u);
  EXPECT_EQ(to_e[0].second.hidden_states.shape, (std::vector<uint32_t>{1, 5, kHidden}));
  h.now = 12;
  h.reply(100);
  // C, which kept its cache, gets only the new position.
  auto to_c = h.sent<StepRequest>();
  ASSERT_EQ(to_c.size(), 1u);
  EXPECT_EQ(to_c[0].first, kC);
  EXPECT_EQ(to_c[0].second.start_position, 4u);
  EXPECT_EQ(to_c[0].second.hidden_states.to_floats(), std::vector<float>(kHidden, 3.0f + 10 + 100));
  h.reply();
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  EXPECT_EQ(h.session.chain(), (Chain{{kA, {0, 3}}, {kD, {3, 5}}, {kE, {5, 6}}, {kC, {6, 8}}}));

  ASSERT_EQ(h.session.recoveries().size(), 1u);
  const Recovery& r = h.session.recoveries()[0];
  EXPECT_EQ(r.span, (BlockSpan{3, 6}));
  EXPECT_EQ(r.failed_peer, kB);
  EXPECT_EQ(r.cause.code, ErrorCode::peer_unreachable);
  EXPECT_EQ(r.replacement, (Chain{{kD, {3, 5}}, {kE, {5, 6}}}));
  EXPECT_EQ(r.positions_replayed, 4u);
  EXPECT_TRUE(r.succeeded);
  EXPECT_DOUBLE_EQ(r.duration_s(), 1.5);

  // The next step runs on the new chain, one position per hop.
  h.input(StepRequested{hidden(1, 4.0f), std::nullopt});
  for (PeerId expected_peer : {kA, kD, kE, kC}) {
    EXPECT_EQ(h.sent<StepRequest>().at(0).first, expected_peer);
    EXPECT_EQ(h.sent<StepRequest>().at(0).second.start_position, 5u);
    h.reply();
  }
  EXPECT_EQ(h.all<StepDone>().size(), 1u);
}

TEST(InferenceSessionRecovery, LateRepliesFromAReplacedServerAreIgnored) {
  Harness h = running();
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();  // A
  const auto [peer, lost] = h.sent<StepRequest>().at(0);
  h.now = 2.5;
  h.input(TimerFired{InferenceSession::kDeadlineTimer});  // B is slow: replaced
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.avoid, (std::vector<PeerId>{kB}));
  h.input(RoutePlanned{plan.route_id, Chain{{kD, {3, 6}}}});
  h.open_all();
  // B's answer arrives after all, and so does an error from it: nothing happens.
  h.input(MessageReceived{kB, StepResult{lost.session_id, lost.step_id, lost.start_position, hidden(1, 9.0f)}});
  EXPECT_TRUE(h.effects.empty());
  h.input(MessageReceived{kB, ErrorReply{lost.session_id, 0, Error{ErrorCode::session_closed, "idle"}}});
  EXPECT_TRUE(h.effects.empty());
  EXPECT_EQ(h.session.recoveries().at(0).cause.code, ErrorCode::timeout);
}

// A chat idles between turns and B closes its session: B is not at fault, so the next step
// re-opens the span on B itself at once (no ban to wait out) and replays what B held.
TEST(InferenceSessionRecovery, AServerThatClosedAnIdleSessionTakesItsSpanAgainWithoutABan) {
  Harness h = running();
  const uint64_t b_session = h.session.config().session_id + 1;
  h.now = 400;
  h.input(MessageReceived{kB, ErrorReply{b_session, 0, Error{ErrorCode::session_closed, "closed after 300 s"}}});
  EXPECT_FALSE(h.session.bans().banned(kB, 400));
  h.now = 401;
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  EXPECT_EQ(h.reply().second.start_position, 4u) << "A keeps its cache";
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{3, 6}));
  EXPECT_TRUE(plan.avoid.empty());
  h.input(RoutePlanned{plan.route_id, Chain{{kB, {3, 6}}}});
  h.open_all();
  const auto replay = h.sent<StepRequest>();
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_EQ(replay[0].first, kB);
  EXPECT_EQ(replay[0].second.start_position, 0u);
  EXPECT_EQ(replay[0].second.hidden_states.shape, (std::vector<uint32_t>{1, 5, kHidden})) << "4 held + the new one";
  h.reply();  // B
  EXPECT_EQ(h.reply().second.start_position, 4u) << "C keeps its cache";
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  ASSERT_EQ(h.session.recoveries().size(), 1u);
  EXPECT_EQ(h.session.recoveries()[0].cause.code, ErrorCode::session_closed);
  EXPECT_TRUE(h.session.recoveries()[0].succeeded);
}

TEST(InferenceSessionRecovery, WaitsForTheOnlyServerOfASpanToBeUnbannedThenUsesItAgain) {
  Harness h = running();
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();
  h.now = 1;
  h.input(PeerUnreachable{kB, "connection reset"});  // a blip: B is banned until 16
  std::vector<Time> replans;
  for (int i = 0; i < 10 && h.session.phase() == InferenceSession::Phase::stepping; ++i) {
    const auto plan = h.all<PlanRoute>();
    if (plan.empty()) break;
    replans.push_back(h.now);
    if (!plan[0].avoid.empty()) {
      h.input(RoutePlanned{plan[0].route_id, Error{ErrorCode::no_route, "nobody but B holds block 3"}});
      const auto timer = h.all<SetTimer>().at(0);
      h.now = timer.at;
      h.input(TimerFired{timer.timer});
    } else {
      h.input(RoutePlanned{plan[0].route_id, Chain{{kB, {3, 6}}}});
    }
  }
  // Every 5 s, and once more right when the ban ended.
  EXPECT_EQ(replans, (std::vector<Time>{1, 6, 11, 16}));
  h.open_all();
  EXPECT_EQ(h.sent<StepRequest>().at(0).first, kB);
  EXPECT_EQ(h.sent<StepRequest>().at(0).second.start_position, 0u) << "B's new session starts empty";
}

TEST(InferenceSessionRecovery, GivesUpAfterTheRecoveryDeadlineNamingBlocksServerAndCause) {
  Harness h = running();
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();
  h.now = 100;
  h.input(MessageReceived{kB, ErrorReply{h.sent<StepRequest>().at(0).second.session_id, 0,
                                         Error{ErrorCode::compute_failed, "out of memory"}}});
  int plans = 0;
  while (!h.all<PlanRoute>().empty()) {
    ++plans;
    h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Error{ErrorCode::no_route, "no server holds block 3"}});
    if (!h.all<SessionFailed>().empty()) break;
    const auto timer = h.all<SetTimer>().at(0);
    EXPECT_LE(timer.at, 160.0);
    h.now = timer.at;
    h.input(TimerFired{timer.timer});
  }
  const auto failed = h.all<SessionFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(h.now, 160.0);
  EXPECT_GT(plans, 10);
  const std::string& message = failed[0].error.message;
  EXPECT_EQ(failed[0].error.code, ErrorCode::no_route);
  for (const std::string& part : {std::string("[3, 6)"), kB.to_string(), std::string("out of memory"),
                                  std::string("60 s"), std::string("no server holds block 3")}) {
    EXPECT_NE(message.find(part), std::string::npos) << part << " missing from: " << message;
  }
  EXPECT_EQ(h.sent<CloseSession>().size(), 2u) << "A and C are closed (B was at once)";
  EXPECT_FALSE(h.session.recoveries().at(0).succeeded);
}

TEST(InferenceSessionRecovery, AHopLostBetweenStepsIsReplacedWhenTheNextStepNeedsIt) {
  Harness h = running();
  h.input(PeerUnreachable{kC, "connection reset"});
  EXPECT_TRUE(h.all<PlanRoute>().empty()) << "nothing to do until a step comes";
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::ready);
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();  // A
  h.reply();  // B
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{6, 8}));
  h.input(RoutePlanned{plan.route_id, Chain{{kD, {6, 8}}}});
  h.open_all();
  EXPECT_EQ(h.sent<StepRequest>().at(0).second.hidden_states.shape, (std::vector<uint32_t>{1, 5, kHidden}));
  h.reply();
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  EXPECT_EQ(h.all<StepDone>()[0].outputs.shape, (std::vector<uint32_t>{1, 1, kHidden}));
  EXPECT_EQ(h.session.recoveries().at(0).positions_replayed, 4u);
}

TEST(InferenceSessionRecovery, AReplacementThatFailsTooIsReplacedInTurn) {
  Harness h = running();
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();
  h.input(PeerUnreachable{kB, "gone"});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kD, {3, 6}}}});
  // D never answers its open.
  const auto timer = h.all<SetTimer>().at(0);
  EXPECT_EQ(timer.at, 5.0 + 2.0);
  h.now = timer.at;
  h.input(TimerFired{timer.timer});
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.avoid, (std::vector<PeerId>{kB, kD}));
  h.input(RoutePlanned{plan.route_id, Chain{{kE, {3, 6}}}});
  h.open_all();
  EXPECT_EQ(h.sent<StepRequest>().at(0).first, kE);
  h.reply();
  h.reply();
  EXPECT_EQ(h.all<StepDone>().size(), 1u);
  ASSERT_EQ(h.session.recoveries().size(), 2u);
  EXPECT_FALSE(h.session.recoveries()[0].succeeded);
  EXPECT_EQ(h.session.recoveries()[1].failed_peer, kD);
  EXPECT_TRUE(h.session.recoveries()[1].succeeded);
}

TEST(InferenceSessionRecovery, LongStepsAndReplaysGoOutInPiecesOfAtMostMaxStepTokens) {
  auto c = config();
  c.max_step_tokens = 4;
  Harness h(c);
  h.input(OpenRequested{});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kA, {0, 4}}, {kB, {4, 8}}}});
  h.open_all();
  std::vector<float> prompt;
  for (int i = 0; i < 10 * int(kHidden); ++i) prompt.push_back(float(i));
  h.input(StepRequested{make_activation({1, 10, kHidden}, prompt), std::nullopt});
  std::vector<std::pair<PeerId, uint32_t>> pieces;
  while (!h.sent<StepRequest>().empty()) {
    const auto [peer, s] = h.reply();
    EXPECT_LE(token_count(s.hidden_states), 4u);
    pieces.emplace_back(peer, s.start_position);
  }
  EXPECT_EQ(pieces, (std::vector<std::pair<PeerId, uint32_t>>{{kA, 0}, {kA, 4}, {kA, 8}, {kB, 0}, {kB, 4}, {kB, 8}}));
  const auto done = h.all<StepDone>();
  ASSERT_EQ(done.size(), 1u);
  auto expected = prompt;
  for (float& v : expected) v += 2;
  EXPECT_EQ(done[0].outputs.to_floats(), expected);
}

TEST(InferenceSessionRecovery, RestartStartsOverOnAFreshChainFromThePrompt) {
  auto c = config();
  c.recovery = RecoveryPolicy::restart;
  Harness h = running(c);
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();
  h.reply();
  h.input(PeerUnreachable{kC, "gone"});
  EXPECT_EQ(h.sent<CloseSession>().size(), 3u);
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{0, 8}));
  EXPECT_EQ(plan.avoid, (std::vector<PeerId>{kC}));
  h.input(RoutePlanned{plan.route_id, Chain{{kA, {0, 4}}, {kD, {4, 8}}}});
  h.open_all();
  for (PeerId peer : {kA, kD}) {
    const auto s = h.sent<StepRequest>().at(0);
    EXPECT_EQ(s.first, peer);
    EXPECT_EQ(s.second.start_position, 0u);
    EXPECT_EQ(token_count(s.second.hidden_states), 5u);
    h.reply();
  }
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  EXPECT_EQ(h.all<StepDone>()[0].outputs.shape[1], 1u);
  EXPECT_EQ(h.session.recoveries().at(0).span, (BlockSpan{0, 8}));
}

TEST(InferenceSessionRecovery, RestartFromScratchLosesEverythingAndReopensForTheLoopToStartAgain) {
  auto c = config();
  c.recovery = RecoveryPolicy::restart_from_scratch;
  Harness h = running(c);  // 4 positions done
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  h.reply();
  h.input(PeerUnreachable{kB, "gone"});
  // Nothing survives: every hop closed, the step abandoned, the loop told what was lost.
  EXPECT_EQ(h.sent<CloseSession>().size(), 3u);
  EXPECT_TRUE(h.all<StepDone>().empty());
  ASSERT_EQ(h.all<SessionRestarted>().size(), 1u);
  EXPECT_EQ(h.all<SessionRestarted>()[0].positions_lost, 4u);
  EXPECT_EQ(h.session.length(), 0u);
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{0, 8}));
  EXPECT_EQ(plan.avoid, (std::vector<PeerId>{kB}));
  h.input(RoutePlanned{plan.route_id, Chain{{kA, {0, 4}}, {kD, {4, 8}}}});
  EXPECT_TRUE(h.sent<StepRequest>().empty()) << "no history is replayed";
  h.open_all();
  ASSERT_EQ(h.all<SessionReady>().size(), 1u) << "ready again, on the fresh chain";
  EXPECT_EQ(h.all<SessionReady>()[0].chain, (Chain{{kA, {0, 4}}, {kD, {4, 8}}}));
  // The loop starts again from its prompt, at position 0.
  h.input(StepRequested{hidden(3, 1.0f), std::nullopt});
  for (PeerId peer : {kA, kD}) {
    const auto s = h.sent<StepRequest>().at(0);
    EXPECT_EQ(s.first, peer);
    EXPECT_EQ(s.second.start_position, 0u);
    EXPECT_EQ(token_count(s.second.hidden_states), 3u);
    h.reply();
  }
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  const Recovery& r = h.session.recoveries().at(0);
  EXPECT_EQ(r.span, (BlockSpan{0, 8}));
  EXPECT_EQ(r.positions_replayed, 4u);
  EXPECT_TRUE(r.succeeded);
}

TEST(InferenceSessionRecovery, RestartFromScratchBetweenStepsLosesTheGenerationAtTheNextStep) {
  auto c = config();
  c.recovery = RecoveryPolicy::restart_from_scratch;
  Harness h = running(c);
  h.input(PeerUnreachable{kA, "gone"});  // while the loop samples its next token
  EXPECT_TRUE(h.all<SessionRestarted>().empty()) << "a generation that ends here loses nothing";
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::ready);
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  ASSERT_EQ(h.all<SessionRestarted>().size(), 1u);
  EXPECT_EQ(h.all<SessionRestarted>()[0].positions_lost, 4u);
  EXPECT_TRUE(h.sent<StepRequest>().empty());
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::opening);
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kE, {0, 8}}}});
  h.open_all();
  EXPECT_EQ(h.all<SessionReady>().size(), 1u);
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::ready);
}

TEST(InferenceSessionRecovery, CachelessResendsTheWholeSequenceEveryStep) {
  auto c = config();
  c.recovery = RecoveryPolicy::cacheless;
  Harness h = running(c);
  h.input(StepRequested{hidden(1, 2.0f), std::nullopt});
  for (int hop = 0; hop < 3; ++hop) {
    const auto [peer, s] = h.reply();
    EXPECT_EQ(s.start_position, 0u);
    EXPECT_EQ(token_count(s.hidden_states), 5u);
  }
  ASSERT_EQ(h.all<StepDone>().size(), 1u);
  EXPECT_EQ(h.all<StepDone>()[0].start_position, 4u);
  EXPECT_EQ(h.all<StepDone>()[0].outputs.to_floats(), std::vector<float>(kHidden, 5.0f));
}

}  // namespace
}  // namespace bouquet::core

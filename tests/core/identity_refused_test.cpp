// What a failed identity proof means to the client sessions (core/identity_proof.h), driven by
// hand: the server's hop fails and is re-routed, the failure is reported with the driver's reason,
// and no later route of the session uses that server, even long after any ban would have ended.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/identity_proof.h"
#include "core/inference_session.h"
#include "core/pass_session.h"
#include "tests/core/support/effects.h"

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 2;
const PeerId kImpostor{10}, kHonest{20}, kBack{30}, kOther{40};

template <class Session>
struct Harness {
  Session session;
  Time now = 0;
  std::vector<Effect> effects;

  template <class Config>
  explicit Harness(Config config) : session(std::move(config)) {}
  void input(const Input& in) {
    effects.clear();
    session.handle(now, in, effects);
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

Activation ones(uint32_t tokens) {
  return make_activation({1, tokens, kHidden}, std::vector<float>(tokens * kHidden, 1));
}

bool contains(const std::vector<PeerId>& peers, PeerId peer) {
  return std::find(peers.begin(), peers.end(), peer) != peers.end();
}

InferenceSessionConfig session_config() {
  InferenceSessionConfig c;
  c.session_id = 1000;
  c.model_id = "m";
  c.num_blocks = 4;
  c.hidden_size = kHidden;
  c.max_length = 8;
  return c;
}

TEST(IdentityRefused, AnInferenceHopIsReroutedReportedAndItsServerNeverRoutedToAgain) {
  Harness<InferenceSession> h(session_config());
  h.input(OpenRequested{});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kImpostor, {0, 2}}, {kBack, {2, 4}}}});
  const auto opens = h.sent<OpenSession>();
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_FALSE(opens[0].second.identity_nonce) << "the core never fills the challenge; the driver does";
  h.input(MessageReceived{kBack, SessionOpened{opens[1].second.session_id, std::nullopt}});

  // The driver dropped the impostor's SessionOpened: its proof named another key.
  h.now = 1;
  h.input(IdentityRefused{kImpostor, "server 127.0.0.1:9 failed the identity challenge: it holds another key"});
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{0, 2}));
  EXPECT_TRUE(contains(plan.avoid, kImpostor));
  ASSERT_EQ(h.session.recoveries().size(), 1u);
  const Recovery& r = h.session.recoveries()[0];
  EXPECT_EQ(r.failed_peer, kImpostor);
  EXPECT_EQ(r.cause.code, ErrorCode::identity_refused);
  EXPECT_NE(r.cause.message.find("server 127.0.0.1:9 failed the identity challenge"), std::string::npos)
      << r.cause.message;
  EXPECT_TRUE(h.session.impostors().contains(kImpostor));

  h.input(RoutePlanned{plan.route_id, Chain{{kHonest, {0, 2}}}});
  const auto reopen = h.sent<OpenSession>();
  ASSERT_EQ(reopen.size(), 1u);
  EXPECT_EQ(reopen[0].first, kHonest);
  h.input(MessageReceived{kHonest, SessionOpened{reopen[0].second.session_id, std::nullopt}});
  ASSERT_EQ(h.all<SessionReady>().size(), 1u);
  EXPECT_EQ(h.session.chain(), (Chain{{kHonest, {0, 2}}, {kBack, {2, 4}}}));

  // Long after its ban would have ended, a re-plan for the honest server's span still avoids it.
  h.now = 1e6;
  h.input(PeerUnreachable{kHonest, "connection reset"});
  h.input(StepRequested{ones(1), std::nullopt});  // a hop failed between steps is replaced by the next
  const auto later = h.all<PlanRoute>().at(0);
  EXPECT_TRUE(contains(later.avoid, kImpostor));
  EXPECT_FALSE(h.session.bans().banned(kImpostor, h.now)) << "the ban alone would have let it back";
}

TEST(IdentityRefused, ARefusalOfAServerNotInTheChainChangesNothingButItsFutureRoutes) {
  Harness<InferenceSession> h(session_config());
  h.input(OpenRequested{});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kHonest, {0, 2}}, {kBack, {2, 4}}}});
  for (const auto& [peer, open] : h.sent<OpenSession>())
    h.input(MessageReceived{peer, SessionOpened{open.session_id, std::nullopt}});
  ASSERT_EQ(h.session.phase(), InferenceSession::Phase::ready);
  h.input(IdentityRefused{kOther, "elsewhere"});
  EXPECT_TRUE(h.all<SendMessage>().empty());
  EXPECT_TRUE(h.session.recoveries().empty());
  EXPECT_EQ(h.session.phase(), InferenceSession::Phase::ready);
}

PassSessionConfig pass_config() {
  PassSessionConfig c;
  c.model_id = "m";
  c.num_blocks = 4;
  c.hidden_size = kHidden;
  c.max_tokens_per_request = 0;
  c.max_retries = 2;
  return c;
}

TEST(IdentityRefused, AFineTuningHopIsReroutedReportedAndItsServerAvoidedForTheRestOfTheSession) {
  Harness<PassSession> h(pass_config());
  h.input(ForwardRequested{ones(3), std::nullopt});
  h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Chain{{kImpostor, {0, 2}}, {kBack, {2, 4}}}});
  ASSERT_EQ(h.sent<ForwardRequest>().at(0).first, kImpostor);
  EXPECT_FALSE(h.sent<ForwardRequest>().at(0).second.identity_nonce);

  h.now = 1;
  h.input(IdentityRefused{kImpostor, "server 127.0.0.1:9 failed the identity challenge: no proof"});
  const auto plan = h.all<PlanRoute>().at(0);
  EXPECT_EQ(plan.blocks, (BlockSpan{0, 2}));
  EXPECT_TRUE(contains(plan.avoid, kImpostor));
  ASSERT_EQ(h.session.recoveries().size(), 1u);
  EXPECT_EQ(h.session.recoveries()[0].failed_peer, kImpostor);
  EXPECT_EQ(h.session.recoveries()[0].cause.code, ErrorCode::identity_refused);
  EXPECT_TRUE(h.session.impostors().contains(kImpostor));

  h.input(RoutePlanned{plan.route_id, Chain{{kHonest, {0, 2}}}});
  auto forwards = h.sent<ForwardRequest>();
  ASSERT_EQ(forwards.size(), 1u);
  EXPECT_EQ(forwards[0].first, kHonest);
  h.input(MessageReceived{kHonest, ForwardResult{forwards[0].second.request_id, ones(3), std::nullopt}});
  forwards = h.sent<ForwardRequest>();
  ASSERT_EQ(forwards.size(), 1u);
  EXPECT_EQ(forwards[0].first, kBack);
  h.input(MessageReceived{kBack, ForwardResult{forwards[0].second.request_id, ones(3), std::nullopt}});
  ASSERT_EQ(h.all<ForwardDone>().size(), 1u);

  // The next pass, long after any ban, plans without it.
  h.now = 1e6;
  h.input(ForwardRequested{ones(3), std::nullopt});
  EXPECT_TRUE(contains(h.all<PlanRoute>().at(0).avoid, kImpostor));
}

TEST(IdentityProof, TheSignedBytesAreTheDomainTheNonceThePeerAndTheModel) {
  const std::string nonce(kIdentityNonceBytes, 'n');
  const std::string message = identity_proof_message(nonce, PeerId{0x0102030405060708}, "model@abc");
  EXPECT_EQ(message,
            std::string("bouquet-session-v1") + nonce + std::string("\x08\x07\x06\x05\x04\x03\x02\x01") + "model@abc");
  // Any part changed changes the bytes signed.
  EXPECT_NE(identity_proof_message(nonce, PeerId{1}, "model@abc"), message);
  EXPECT_NE(identity_proof_message(std::string(kIdentityNonceBytes, 'm'), PeerId{0x0102030405060708}, "model@abc"),
            message);
  EXPECT_NE(identity_proof_message(nonce, PeerId{0x0102030405060708}, "model@abd"), message);
}

}  // namespace
}  // namespace bouquet::core

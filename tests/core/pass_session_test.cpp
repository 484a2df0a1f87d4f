// The pass client driven by hand: what it splits, where it sends, what it replays after a failure,
// what it reports.
#include "core/pass_session.h"
#include "tests/core/support/effects.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 2;
const PeerId kA{10}, kB{20}, kC{30}, kD{40};

struct Harness {
  PassSession session;
  Time now = 0;
  std::vector<Effect> effects;
  std::vector<std::pair<PeerId, MessageType>> log;  // every request sent, in order

  explicit Harness(PassSessionConfig config) : session(std::move(config)) {}

  std::vector<Effect>& input(const Input& in) {
    effects.clear();
    session.handle(now, in, effects);
    for (const auto& e : effects) {
      if (auto* s = std::get_if<SendMessage>(&e)) log.emplace_back(s->to, message_type(s->message));
    }
    return effects;
  }
  template <class T>
  std::vector<T> all() const {
    return test::effects_of<T>(effects);
  }
  // Answers every PlanRoute of the last input with `chain`.
  void route_all(const Chain& chain) {
    std::vector<Effect> caused;
    for (const auto& plan : all<PlanRoute>()) {
      EXPECT_EQ(plan.routing, Routing::throughput);
      input(RoutePlanned{plan.route_id, chain});
      caused.insert(caused.end(), effects.begin(), effects.end());
    }
    effects = std::move(caused);
  }
  // Servers that answer: a forward adds 1 to every value, a backward doubles the gradient and
  // answers the prompts' gradient as the prompts themselves. `skip` lets a request go unanswered.
  void serve(const std::function<bool(PeerId, const Message&)>& skip = {}) {
    for (int rounds = 0; rounds < 100; ++rounds) {
      std::vector<Effect> caused;
      bool any = false;
      for (const auto& send : all<SendMessage>()) {
        if (skip && skip(send.to, send.message)) continue;
        if (auto* f = std::get_if<ForwardRequest>(&send.message)) {
          auto v = f->hidden_states.to_floats();
          for (float& x : v) x += 1;
          input(MessageReceived{
              send.to, ForwardResult{f->request_id, make_activation(f->hidden_states.shape, v), std::nullopt}});
        } else if (auto* b = std::get_if<BackwardRequest>(&send.message)) {
          auto v = b->grad_outputs.to_floats();
          for (float& x : v) x *= 2;
          std::optional<Activation> gp;
          if (b->prompts) gp = make_activation(b->prompts->shape, b->prompts->to_floats());
          input(MessageReceived{
              send.to, BackwardResult{b->request_id, make_activation(b->grad_outputs.shape, v), gp, std::nullopt}});
        } else {
          continue;
        }
        any = true;
        caused.insert(caused.end(), effects.begin(), effects.end());
      }
      if (!any) return;
      effects = std::move(caused);
    }
  }
};

PassSessionConfig config(uint32_t max_tokens = 4) {
  PassSessionConfig c;
  c.model_id = "m";
  c.num_blocks = 8;
  c.hidden_size = kHidden;
  c.reply_timeout_s = 5;
  c.max_tokens_per_request = max_tokens;
  c.max_retries = 2;
  return c;
}

Activation values(std::vector<uint32_t> shape, float first) {
  uint64_t n = 1;
  for (uint32_t d : shape) n *= d;
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = first + static_cast<float>(i);
  return make_activation(std::move(shape), std::move(v));
}

std::vector<float> plus(const Activation& a, float add, float times = 1) {
  auto v = a.to_floats();
  for (float& x : v) x = (x + add) * times;
  return v;
}

TEST(PassSession, SplitsIntoSubBatchesEachThroughItsChainForwardThenBackward) {
  Harness h(config(/*max_tokens=*/4));
  const Activation x = values({4, 2, kHidden}, 0);  // 4 sequences of 2: two sub-batches of 2
  h.input(ForwardRequested{x, std::nullopt});
  ASSERT_EQ(h.all<PlanRoute>().size(), 2u);
  EXPECT_EQ(h.all<PlanRoute>()[0].blocks, (BlockSpan{0, 8}));
  h.route_all(Chain{{kA, {0, 5}}, {kB, {5, 8}}});
  EXPECT_EQ(h.all<SendMessage>().size(), 2u) << "both sub-batches go out at once";
  h.serve();
  ASSERT_EQ(h.all<ForwardDone>().size(), 1u);
  EXPECT_EQ(h.all<ForwardDone>()[0].outputs.to_floats(), plus(x, 2));
  EXPECT_EQ(h.session.phase(), PassSession::Phase::forward_done);

  const Activation g = values({4, 2, kHidden}, 100);
  h.input(BackwardRequested{g});
  h.serve();
  ASSERT_EQ(h.all<BackwardDone>().size(), 1u);
  EXPECT_EQ(h.all<BackwardDone>()[0].grad_inputs.to_floats(), plus(g, 0, 4));
  EXPECT_FALSE(h.all<BackwardDone>()[0].grad_prompts.has_value());
  EXPECT_EQ(h.session.requests_sent(), 8u);  // 2 sub-batches x 2 hops x forward and backward
  // The backward walks each chain in reverse.
  std::vector<PeerId> backward_order;
  for (const auto& [peer, type] : h.log) {
    if (type == MessageType::backward) backward_order.push_back(peer);
  }
  EXPECT_EQ(backward_order, (std::vector<PeerId>{kB, kB, kA, kA}));
  EXPECT_EQ(h.session.phase(), PassSession::Phase::idle);
}

TEST(PassSession, AFailedForwardHopIsBannedReplannedForItsSpanAndThePassGoesOn) {
  Harness h(config(0));
  const Activation x = values({1, 3, kHidden}, 0);
  h.input(ForwardRequested{x, std::nullopt});
  h.route_all(Chain{{kA, {0, 4}}, {kB, {4, 8}}});
  h.serve([](PeerId to, const Message&) { return to == kB; });  // A answers, B does not yet
  h.now = 1;
  h.input(PeerUnreachable{kB, "connection reset"});
  const auto plans = h.all<PlanRoute>();
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(plans[0].blocks, (BlockSpan{4, 8}));
  EXPECT_EQ(plans[0].avoid, (std::vector<PeerId>{kB}));
  h.route_all(Chain{{kC, {4, 6}}, {kD, {6, 8}}});
  h.serve();
  ASSERT_EQ(h.all<ForwardDone>().size(), 1u);
  EXPECT_EQ(h.all<ForwardDone>()[0].outputs.to_floats(), plus(x, 3)) << "A, then C and D";
  ASSERT_EQ(h.session.recoveries().size(), 1u);
  EXPECT_EQ(h.session.recoveries()[0].failed_peer, kB);
  EXPECT_EQ(h.session.recoveries()[0].cause.code, ErrorCode::peer_unreachable);
  EXPECT_EQ(h.session.recoveries()[0].replacement, (Chain{{kC, {4, 6}}, {kD, {6, 8}}}));
  EXPECT_EQ(h.session.chains().at(0), (Chain{{kA, {0, 4}}, {kC, {4, 6}}, {kD, {6, 8}}}));
}

TEST(PassSession, ABackwardReplacementOfSeveralHopsFirstRecomputesTheirInputsForward) {
  Harness h(config(0));
  const Activation x = values({1, 2, kHidden}, 0);
  h.input(ForwardRequested{x, std::nullopt});
  h.route_all(Chain{{kA, {0, 4}}, {kB, {4, 8}}});
  h.serve();
  h.log.clear();
  const Activation g = values({1, 2, kHidden}, 10);
  h.input(BackwardRequested{g});
  // B answers its backward with an error: the span [4, 8) is re-planned onto C and D.
  const auto first = h.all<SendMessage>().at(0);
  ASSERT_EQ(first.to, kB);
  const uint64_t id = std::get<BackwardRequest>(first.message).request_id;
  h.input(MessageReceived{kB, ErrorReply{id, 0, Error{ErrorCode::compute_failed, "out of memory"}}});
  h.route_all(Chain{{kC, {4, 6}}, {kD, {6, 8}}});
  h.serve();
  const std::vector<std::pair<PeerId, MessageType>> expected{{kB, MessageType::backward},
                                                             {kC, MessageType::forward},  // C recomputes D's inputs
                                                             {kD, MessageType::backward},
                                                             {kC, MessageType::backward},
                                                             {kA, MessageType::backward}};
  EXPECT_EQ(h.log, expected);
  ASSERT_EQ(h.all<BackwardDone>().size(), 1u);
  EXPECT_EQ(h.all<BackwardDone>()[0].grad_inputs.to_floats(), plus(g, 0, 8));
}

TEST(PassSession, DeepPromptsGoPerHopAndTheirGradientIsAssembledPerBlock) {
  for (const uint32_t prompt_rows : {1u, 2u}) {
    SCOPED_TRACE(prompt_rows == 1 ? "shared prompts" : "per-sequence prompts");
    Harness h(config(/*max_tokens=*/2));  // one sequence per sub-batch
    const Activation x = values({2, 2, kHidden}, 0);
    const Activation prompts = values({8, prompt_rows, 1, kHidden}, 0);
    h.input(ForwardRequested{x, prompts});
    h.route_all(Chain{{kA, {0, 3}}, {kB, {3, 8}}});
    for (const auto& send : h.all<SendMessage>()) {
      const auto& f = std::get<ForwardRequest>(send.message);
      EXPECT_EQ(f.prompts->shape, (std::vector<uint32_t>{3, 1, 1, kHidden})) << "A's blocks, one sequence's rows";
    }
    h.serve();
    h.input(BackwardRequested{values({2, 2, kHidden}, 0)});
    h.serve();
    ASSERT_EQ(h.all<BackwardDone>().size(), 1u);
    const std::optional<Activation> grad = h.all<BackwardDone>()[0].grad_prompts;
    ASSERT_TRUE(grad.has_value());
    EXPECT_EQ(grad->shape, prompts.shape);
    // The servers answer each slice with itself: shared prompts are summed over the two
    // sub-batches, per-sequence prompts come back as they went.
    EXPECT_EQ(grad->to_floats(), plus(prompts, 0, prompt_rows == 1 ? 2.0f : 1.0f));
  }
}

TEST(PassSession, ABadRequestOrTooManyFailuresOrNoRouteFailThePassNamingWhy) {
  {
    Harness h(config(0));
    h.input(ForwardRequested{values({1, 2, kHidden}, 0), std::nullopt});
    h.route_all(Chain{{kA, {0, 8}}});
    const uint64_t id = std::get<ForwardRequest>(h.all<SendMessage>().at(0).message).request_id;
    h.input(MessageReceived{kA, ErrorReply{id, 0, Error{ErrorCode::bad_request, "wrong shape"}}});
    ASSERT_EQ(h.all<PassFailed>().size(), 1u);
    EXPECT_EQ(h.all<PassFailed>()[0].error.code, ErrorCode::bad_request);
    EXPECT_NE(h.all<PassFailed>()[0].error.message.find("refused forward of blocks [0, 8)"), std::string::npos);
    EXPECT_TRUE(h.session.recoveries().empty()) << "never retried elsewhere";
  }
  {
    Harness h(config(0));  // max_retries 2: the third failure ends the pass
    h.input(ForwardRequested{values({1, 2, kHidden}, 0), std::nullopt});
    h.route_all(Chain{{kA, {0, 8}}});
    for (PeerId next : {kB, kC, kD}) {
      h.now += 6;  // past the reply deadline
      h.input(TimerFired{PassSession::kDeadlineTimer});
      if (next == kD) break;
      h.route_all(Chain{{next, {0, 8}}});
    }
    ASSERT_EQ(h.all<PassFailed>().size(), 1u);
    EXPECT_EQ(h.all<PassFailed>()[0].error.code, ErrorCode::timeout);
    EXPECT_NE(h.all<PassFailed>()[0].error.message.find("giving up after 3 failed hops"), std::string::npos);
  }
  {
    Harness h(config(0));
    h.input(ForwardRequested{values({1, 2, kHidden}, 0), std::nullopt});
    h.input(RoutePlanned{h.all<PlanRoute>().at(0).route_id, Error{ErrorCode::no_route, "nobody holds block 3"}});
    ASSERT_EQ(h.all<PassFailed>().size(), 1u);
    EXPECT_NE(h.all<PassFailed>()[0].error.message.find("nobody holds block 3"), std::string::npos);
  }
}

TEST(PassSession, LateAndForeignRepliesAreIgnored) {
  Harness h(config(0));
  h.input(ForwardRequested{values({1, 2, kHidden}, 0), std::nullopt});
  h.route_all(Chain{{kA, {0, 8}}});
  const auto f = std::get<ForwardRequest>(h.all<SendMessage>().at(0).message);
  h.input(MessageReceived{kB, ForwardResult{f.request_id, f.hidden_states, std::nullopt}});      // not A
  h.input(MessageReceived{kA, ForwardResult{f.request_id + 7, f.hidden_states, std::nullopt}});  // not this request
  EXPECT_TRUE(h.all<ForwardDone>().empty());
  h.input(MessageReceived{kA, ForwardResult{f.request_id, f.hidden_states, std::nullopt}});
  EXPECT_EQ(h.all<ForwardDone>().size(), 1u);
  h.input(MessageReceived{kA, ForwardResult{f.request_id, f.hidden_states, std::nullopt}});  // a duplicate
  EXPECT_TRUE(h.effects.empty() || h.all<ForwardDone>().empty());
}

}  // namespace
}  // namespace bouquet::core

// The server state machine driven by hand: every input given, every effect checked.
#include "core/block_server.h"

#include <gtest/gtest.h>

#include <set>

#include "core/rng.h"
#include "tests/core/support/effects.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 4;
const PeerId kAlice{1}, kBob{2}, kCarol{3};

struct Harness {
  BlockServer server;
  Time now = 0;
  std::vector<Effect> effects;

  explicit Harness(BlockServerConfig config) : server(std::move(config)) {}

  std::vector<Effect>& input(const Input& in) {
    effects.clear();
    server.handle(now, in, effects);
    return effects;
  }
  std::vector<Effect>& receive(PeerId from, Message m) { return input(MessageReceived{from, std::move(m)}); }

  template <class T>
  std::vector<T> all() const {
    return test::effects_of<T>(effects);
  }
  template <class M>
  std::vector<M> replies(PeerId to) const {
    std::vector<M> out;
    for (const auto& send : all<SendMessage>()) {
      if (send.to != to) continue;
      if (auto* m = std::get_if<M>(&send.message)) out.push_back(*m);
    }
    return out;
  }
  ErrorCode only_error(PeerId to) const {
    auto errors = replies<ErrorReply>(to);
    EXPECT_EQ(errors.size(), 1u);
    return errors.empty() ? ErrorCode{} : errors[0].error.code;
  }
  // Every request started by the last input, single or batched.
  std::vector<ComputeRequest> started() const {
    std::vector<ComputeRequest> out;
    for (const auto& e : effects) {
      if (auto* one = std::get_if<StartCompute>(&e)) out.push_back(one->request);
      if (auto* batch = std::get_if<StartBatch>(&e))
        out.insert(out.end(), batch->requests.begin(), batch->requests.end());
    }
    return out;
  }
  // Finishes a compute with its inputs as outputs (the server only cares about shapes).
  std::vector<Effect>& finish(const ComputeRequest& r) {
    return input(ComputeFinished{r.task_id, ComputeOutput{r.inputs, std::nullopt}});
  }
};

BlockServerConfig config(uint64_t cache_tokens = 100) {
  BlockServerConfig c;
  c.model_id = "m";
  c.span = {2, 6};
  c.hidden_size = kHidden;
  c.cache_tokens = cache_tokens;
  c.session_idle_timeout_s = 10;
  c.cache_wait_max_s = 20;
  return c;
}

OpenSession open(uint64_t id, uint32_t max_length, double wait_s = 0, uint32_t batch = 1) {
  return OpenSession{id, "m", {2, 6}, max_length, batch, Compression::float16, wait_s, "", std::nullopt};
}

StepRequest step(uint64_t session, uint64_t step_id, uint32_t start, uint32_t tokens, uint32_t batch = 1) {
  return StepRequest{
      session,      step_id,
      start,        make_activation({batch, tokens, kHidden}, std::vector<float>(batch * tokens * kHidden, 1.0f)),
      std::nullopt, {}};
}

TEST(BlockServer, OpenReservesBatchTimesMaxLength) {
  Harness h(config(100));
  h.receive(kAlice, open(7, 30, 0, 2));
  ASSERT_EQ(h.replies<SessionOpened>(kAlice).size(), 1u);
  EXPECT_EQ(h.server.cache_tokens_free(), 40u);
  h.receive(kBob, InfoRequest{5});
  auto info = h.replies<InfoReply>(kBob);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].request_id, 5u);
  EXPECT_EQ(info[0].span, (BlockSpan{2, 6}));
  EXPECT_EQ(info[0].cache_tokens_max, 100u);
  EXPECT_EQ(info[0].cache_tokens_free, 40u);
}

TEST(BlockServer, WaitingOpensAreGrantedInArrivalOrderWhenRoomFrees) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 80));
  h.now = 1;
  h.receive(kBob, open(2, 60, 5));  // waits
  EXPECT_TRUE(h.replies<SessionOpened>(kBob).empty());
  ASSERT_EQ(h.all<SetTimer>().size(), 1u);
  EXPECT_EQ(h.all<SetTimer>()[0].at, 6.0);
  h.receive(kCarol, open(3, 10, 5));  // would fit, but waits behind Bob
  EXPECT_TRUE(h.replies<SessionOpened>(kCarol).empty());
  EXPECT_EQ(h.server.waiting_opens(), 2u);
  h.now = 2;
  h.receive(kAlice, CloseSession{1});
  EXPECT_EQ(h.all<DropCache>().size(), 1u);
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
  EXPECT_EQ(h.replies<SessionOpened>(kCarol).size(), 1u);
  EXPECT_EQ(h.all<CancelTimer>().size(), 3u);  // Alice's idle timer, both wait timers
  EXPECT_EQ(h.server.cache_tokens_free(), 30u);
}

TEST(BlockServer, WaitEndsWithCacheFullAtTheClientsTimeoutCappedByTheServer) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 100));
  h.now = 1;
  h.receive(kBob, open(2, 50, 3));
  const SetTimer bob = h.all<SetTimer>().at(0);
  EXPECT_EQ(bob.at, 4.0);
  h.receive(kCarol, open(3, 50, 1e9));
  EXPECT_EQ(h.all<SetTimer>().at(0).at, 21.0);  // capped by cache_wait_max_s
  h.now = 4;
  h.input(TimerFired{bob.timer});
  EXPECT_EQ(h.only_error(kBob), ErrorCode::cache_full);
  EXPECT_EQ(h.server.waiting_opens(), 1u);
  EXPECT_EQ(h.server.cache_tokens_free(), 0u);
  h.receive(kAlice, CloseSession{1});  // Carol, still waiting, gets the room
  EXPECT_EQ(h.replies<SessionOpened>(kCarol).size(), 1u);
}

TEST(BlockServer, SessionLargerThanTheWholeBudgetFailsAtOnce) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 60, 30, 2));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::cache_full);
  EXPECT_EQ(h.server.waiting_opens(), 0u);
}

TEST(BlockServer, BadOpensAreRefusedWithTheirReason) {
  Harness h(config());
  auto wrong_model = open(1, 10);
  wrong_model.model_id = "other";
  h.receive(kAlice, wrong_model);
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::model_mismatch);
  auto wrong_span = open(2, 10);
  wrong_span.span = {4, 7};
  h.receive(kAlice, wrong_span);
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::span_not_served);
  auto adapter = open(3, 10);
  adapter.adapter = "lora";
  h.receive(kAlice, adapter);
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::unknown_adapter);
  h.receive(kAlice, open(4, 0));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_request);
  h.receive(kAlice, open(5, 10));
  h.receive(kAlice, open(5, 10));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_request);
  EXPECT_EQ(h.server.open_sessions(), 1u);
}

TEST(BlockServer, StepsComputeInOrderAndRepliesCarryTheSessionsCompression) {
  Harness h(config());
  h.receive(kAlice, open(1, 20));
  h.receive(kAlice, step(1, 1, 0, 5));
  auto computes = h.all<StartCompute>();
  ASSERT_EQ(computes.size(), 1u);
  const ComputeRequest r = computes[0].request;
  EXPECT_EQ(r.kind, ComputeKind::inference);
  EXPECT_EQ(r.span, (BlockSpan{2, 6}));
  EXPECT_EQ(r.new_tokens, 5u);
  EXPECT_EQ(r.cache_length, 0u);
  EXPECT_EQ(r.max_length, 20u);
  EXPECT_EQ(r.output_compression, Compression::float16);
  h.receive(kAlice, step(1, 2, 5, 1));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::session_busy);
  h.finish(r);
  auto results = h.replies<StepResult>(kAlice);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].step_id, 1u);
  EXPECT_EQ(results[0].start_position, 0u);
  EXPECT_EQ(results[0].hidden_states.compression, Compression::float16);
  h.receive(kAlice, step(1, 2, 5, 1));
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.cache_length, 5u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.cache_id, r.cache_id);
}

TEST(BlockServer, StepPositionsMayRewindButNeverSkipOrOverrun) {
  Harness h(config());
  h.receive(kAlice, open(1, 8));
  h.receive(kAlice, step(1, 1, 0, 4));
  h.finish(h.all<StartCompute>()[0].request);
  h.receive(kAlice, step(1, 2, 5, 1));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_position);
  h.receive(kAlice, step(1, 3, 4, 5));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_position);
  h.receive(kAlice, step(1, 4, 2, 1));  // rewind: recompute position 2 onwards
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.cache_length, 2u);
  h.finish(h.all<StartCompute>()[0].request);
  h.receive(kAlice, step(1, 5, 4, 1));  // the cache now holds 3 positions
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_position);
}

TEST(BlockServer, MalformedStepsGetErrorsAndOthersAreStillServed) {
  Harness h(config());
  h.receive(kAlice, open(1, 20));
  h.receive(kBob, open(1, 20));  // same id, other peer: a different session
  h.receive(kAlice, step(9, 1, 0, 1));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::unknown_session);
  auto wrong_hidden = step(1, 1, 0, 1);
  wrong_hidden.hidden_states = make_activation({1, 1, kHidden + 1}, std::vector<float>(kHidden + 1, 0.0f));
  h.receive(kAlice, wrong_hidden);
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_request);
  h.receive(kAlice, step(1, 1, 0, 1, /*batch=*/2));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_request);
  h.receive(kAlice, SessionOpened{1, std::nullopt});  // a reply type sent to a server
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::protocol);
  h.receive(kBob, step(1, 1, 0, 3));
  EXPECT_EQ(h.all<StartCompute>().size(), 1u);
}

TEST(BlockServer, IdleSessionsCloseButActiveOnesStay) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 50));
  const TimerId idle = h.all<SetTimer>().at(0).timer;
  h.now = 6;
  h.receive(kAlice, step(1, 1, 0, 1));
  h.finish(h.all<StartCompute>()[0].request);
  h.now = 10;
  h.input(TimerFired{idle});  // active at 6: re-armed for 16, still open
  EXPECT_EQ(h.server.open_sessions(), 1u);
  ASSERT_EQ(h.all<SetTimer>().size(), 1u);
  EXPECT_EQ(h.all<SetTimer>()[0].at, 16.0);
  h.now = 16;
  h.input(TimerFired{idle});
  EXPECT_EQ(h.server.open_sessions(), 0u);
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::session_closed);
  EXPECT_EQ(h.all<DropCache>().size(), 1u);
  EXPECT_EQ(h.server.cache_tokens_free(), 100u);
}

TEST(BlockServer, ClientGoneFreesItsSessionsWaitsAndQueuedWork) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 50));
  h.receive(kAlice, open(2, 50));
  h.receive(kBob, open(3, 40, 10));    // waits
  h.receive(kAlice, open(4, 10, 10));  // waits behind Bob
  h.receive(kCarol, ForwardRequest{1,
                                   "m",
                                   {2, 6},
                                   "",
                                   Compression::none,
                                   make_activation({1, 2, kHidden}, std::vector<float>(2 * kHidden, 0.0f)),
                                   std::nullopt,
                                   std::nullopt});
  const ComputeRequest running = h.all<StartCompute>().at(0).request;
  h.receive(kAlice, step(1, 1, 0, 2));  // queued behind Carol's running forward
  h.input(PeerUnreachable{kAlice, "connection reset"});
  EXPECT_EQ(h.all<DropCache>().size(), 2u);
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
  EXPECT_EQ(h.server.open_sessions(), 1u);
  EXPECT_EQ(h.server.waiting_opens(), 0u);
  EXPECT_EQ(h.server.queued_tasks(), 0u);
  h.finish(running);
  EXPECT_EQ(h.replies<ForwardResult>(kCarol).size(), 1u);
  EXPECT_TRUE(h.all<StartCompute>().empty());
}

// Found by fuzzing, then against a live server: a client holding most of the cache queues a large
// open and a small one behind it, then disconnects. Withdrawing the large one granted the small one
// before it was withdrawn too, and the server aborted on a ticket nobody waited on.
TEST(BlockServer, ClientGoneWithTwoQueuedOpensOfItsOwnLeavesTheServerServing) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 90));
  h.receive(kAlice, open(2, 50, 10));  // waits
  h.receive(kAlice, open(3, 5, 10));   // would fit, waits behind 2
  EXPECT_EQ(h.server.waiting_opens(), 2u);
  h.input(PeerUnreachable{kAlice, "connection reset"});
  EXPECT_EQ(h.server.open_sessions(), 0u);
  EXPECT_EQ(h.server.waiting_opens(), 0u);
  EXPECT_EQ(h.server.cache_tokens_free(), 100u);
  EXPECT_TRUE(h.replies<SessionOpened>(kAlice).empty());
  // Its waits' timers are gone with them, and a later client gets the whole budget.
  h.now = 30;
  for (const auto& timer : h.all<CancelTimer>()) h.input(TimerFired{timer.timer});
  h.receive(kBob, open(4, 100));
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
}

TEST(BlockServer, ClientGoneWithQueuedOpensBehindAnotherClientsWaitKeepsTheOtherInOrder) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 60));
  h.receive(kAlice, open(2, 70, 10));  // waits
  h.receive(kBob, open(3, 30, 10));    // waits behind Alice's
  h.receive(kAlice, open(4, 10, 10));  // waits behind Bob's
  h.input(PeerUnreachable{kAlice, "connection reset"});
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
  EXPECT_EQ(h.server.open_sessions(), 1u);
  EXPECT_EQ(h.server.waiting_opens(), 0u);
  EXPECT_EQ(h.server.cache_tokens_free(), 70u);
}

TEST(BlockServer, CacheIsDroppedOnlyAfterTheRunningStepFinishes) {
  Harness h(config(100));
  h.receive(kAlice, open(1, 50));
  h.receive(kAlice, step(1, 1, 0, 2));
  const ComputeRequest r = h.all<StartCompute>().at(0).request;
  h.receive(kAlice, CloseSession{1});
  EXPECT_TRUE(h.all<DropCache>().empty());
  EXPECT_EQ(h.server.cache_tokens_free(), 50u);
  h.finish(r);
  ASSERT_EQ(h.all<DropCache>().size(), 1u);
  EXPECT_EQ(h.all<DropCache>()[0].cache_id, r.cache_id);
  EXPECT_TRUE(h.replies<StepResult>(kAlice).empty());
  EXPECT_EQ(h.server.cache_tokens_free(), 100u);
}

TEST(BlockServer, InferenceRunsBeforeQueuedForwardAndBackwardWhichKeepTheirOrder) {
  Harness h(config());
  auto x = make_activation({1, 2, kHidden}, std::vector<float>(2 * kHidden, 0.0f));
  h.receive(kBob, ForwardRequest{1, "m", {2, 6}, "", Compression::none, x, std::nullopt, std::nullopt});
  ComputeRequest running = h.all<StartCompute>().at(0).request;
  h.receive(kBob, BackwardRequest{2, "m", {2, 6}, "", Compression::none, x, x, std::nullopt, std::nullopt});
  h.receive(kBob, ForwardRequest{3, "m", {3, 5}, "", Compression::none, x, std::nullopt, std::nullopt});
  h.receive(kAlice, open(1, 10));
  h.receive(kAlice, step(1, 1, 0, 1));
  EXPECT_TRUE(h.all<StartCompute>().empty());  // one slot, busy
  EXPECT_EQ(h.server.queued_tasks(), 3u);
  std::vector<ComputeKind> order;
  for (int i = 0; i < 3; ++i) {
    h.finish(running);
    ASSERT_EQ(h.all<StartCompute>().size(), 1u);
    running = h.all<StartCompute>()[0].request;
    order.push_back(running.kind);
  }
  EXPECT_EQ(order, (std::vector<ComputeKind>{ComputeKind::inference, ComputeKind::backward, ComputeKind::forward}));
  h.finish(running);
  auto forwards = h.replies<ForwardResult>(kBob);
  ASSERT_EQ(forwards.size(), 1u);
  EXPECT_EQ(forwards[0].request_id, 3u);
}

TEST(BlockServer, FailedComputeIsReportedAndTheSessionGoesOn) {
  Harness h(config());
  h.receive(kAlice, open(1, 10));
  h.receive(kAlice, step(1, 1, 0, 3));
  const auto r = h.all<StartCompute>().at(0).request;
  h.input(ComputeFinished{r.task_id, Error{ErrorCode::compute_failed, "out of memory"}});
  auto errors = h.replies<ErrorReply>(kAlice);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].step_id, 1u);
  EXPECT_EQ(errors[0].error.message, "out of memory");
  h.receive(kAlice, step(1, 2, 1, 1));  // nothing after position 0 is trusted
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::bad_position);
  h.receive(kAlice, step(1, 3, 0, 3));
  EXPECT_EQ(h.all<StartCompute>().size(), 1u);
}

// Limits against greedy and hostile clients: each is announced, refused with a code
// naming it, and counted per client (one peer).

ForwardRequest forward(uint64_t id, uint32_t batch, uint32_t tokens) {
  return ForwardRequest{id,
                        "m",
                        {2, 6},
                        "",
                        Compression::none,
                        make_activation({batch, tokens, kHidden}, std::vector<float>(batch * tokens * kHidden, 0.5f)),
                        std::nullopt,
                        std::nullopt};
}

TEST(BlockServerLimits, InfoAnnouncesEveryLimit) {
  BlockServerConfig c = config(100);
  c.request_tokens_max = 16;
  c.client_cache_tokens_max = 40;
  c.client_opens_waiting_max = 3;
  c.client_tasks_queued_max = 5;
  c.tasks_queued_max = 7;
  Harness h(c);
  h.receive(kAlice, InfoRequest{1});
  const InfoReply info = h.replies<InfoReply>(kAlice).at(0);
  EXPECT_EQ(info.request_tokens_max, 16u);
  EXPECT_EQ(info.client_cache_tokens_max, 40u);
  EXPECT_EQ(info.client_opens_waiting_max, 3u);
  EXPECT_EQ(info.client_tasks_queued_max, 5u);
  EXPECT_EQ(info.tasks_queued_max, 7u);
  // A quota beyond the whole cache is announced as the cache.
  c.client_cache_tokens_max = 1000;
  Harness whole(c);
  whole.receive(kAlice, InfoRequest{2});
  EXPECT_EQ(whole.replies<InfoReply>(kAlice).at(0).client_cache_tokens_max, 100u);
}

TEST(BlockServerLimits, ForwardOrBackwardOverTheTokenCapIsRefusedOverLimit) {
  BlockServerConfig c = config();
  c.request_tokens_max = 8;
  Harness h(c);
  h.receive(kAlice, forward(1, 2, 5));  // 10 tokens
  ASSERT_EQ(h.only_error(kAlice), ErrorCode::over_limit);
  const std::string message = h.replies<ErrorReply>(kAlice)[0].error.message;
  EXPECT_NE(message.find("request_tokens_max"), std::string::npos) << message;
  EXPECT_NE(message.find("2 x 5 = 10 tokens"), std::string::npos) << message;
  EXPECT_TRUE(h.all<StartCompute>().empty());
  const ForwardRequest big = forward(2, 3, 3);
  h.receive(
      kAlice,
      BackwardRequest{
          2, "m", {2, 6}, "", Compression::none, big.hidden_states, big.hidden_states, std::nullopt, std::nullopt});
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::over_limit);
  h.receive(kAlice, forward(3, 2, 4));  // exactly the cap
  EXPECT_EQ(h.all<StartCompute>().size(), 1u);
}

TEST(BlockServerLimits, QueuedPassesAreCappedPerClientAndInAll) {
  BlockServerConfig c = config();
  c.client_tasks_queued_max = 2;
  c.tasks_queued_max = 3;
  Harness h(c);
  h.receive(kAlice, forward(1, 1, 2));  // runs: not queued
  const ComputeRequest running = h.all<StartCompute>().at(0).request;
  h.receive(kAlice, forward(2, 1, 2));
  h.receive(kAlice, forward(3, 1, 2));
  EXPECT_EQ(h.server.queued_tasks(), 2u);
  h.receive(kAlice, forward(4, 1, 2));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::overloaded);
  EXPECT_NE(h.replies<ErrorReply>(kAlice)[0].error.message.find("client_tasks_queued_max"), std::string::npos);
  h.receive(kBob, forward(5, 1, 2));  // Bob has his own quota: queued, the queue is now full
  EXPECT_TRUE(h.replies<ErrorReply>(kBob).empty());
  h.receive(kBob, forward(6, 1, 2));
  EXPECT_EQ(h.only_error(kBob), ErrorCode::overloaded);
  EXPECT_NE(h.replies<ErrorReply>(kBob)[0].error.message.find("tasks_queued_max"), std::string::npos);
  // Room comes back as the queue drains.
  h.finish(running);
  EXPECT_EQ(h.server.queued_tasks(), 2u);
  h.receive(kBob, forward(7, 1, 2));
  EXPECT_TRUE(h.replies<ErrorReply>(kBob).empty());
}

TEST(BlockServerLimits, CacheQuotaCountsWhatAClientHoldsAndWaitsFor) {
  BlockServerConfig c = config(100);
  c.client_cache_tokens_max = 50;
  Harness h(c);
  h.receive(kAlice, open(1, 60));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::over_limit);  // alone beyond the quota
  h.receive(kAlice, open(2, 40));
  EXPECT_EQ(h.replies<SessionOpened>(kAlice).size(), 1u);
  h.receive(kAlice, open(3, 20));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::overloaded);
  EXPECT_NE(h.replies<ErrorReply>(kAlice)[0].error.message.find("already holds or waits for 40"), std::string::npos);
  h.receive(kBob, open(4, 50));  // another client has its own quota
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
  h.receive(kCarol, open(5, 10, 10));  // the last 10 free
  EXPECT_EQ(h.replies<SessionOpened>(kCarol).size(), 1u);
  h.receive(kCarol, open(6, 45, 10));  // would wait, but what a client waits for counts too: 55 > 50
  EXPECT_EQ(h.only_error(kCarol), ErrorCode::overloaded);
  h.receive(kAlice, CloseSession{2});  // Alice's books come back with her session: 40 more fit
  h.receive(kAlice, open(7, 40));
  EXPECT_EQ(h.replies<SessionOpened>(kAlice).size(), 1u);
}

TEST(BlockServerLimits, OpensWaitingAreCappedPerClientAndForgottenWithTheClient) {
  BlockServerConfig c = config(100);
  c.client_opens_waiting_max = 2;
  Harness h(c);
  h.receive(kBob, open(1, 100));
  h.receive(kAlice, open(2, 10, 10));
  h.receive(kAlice, open(3, 10, 10));
  EXPECT_EQ(h.server.waiting_opens(), 2u);
  h.receive(kAlice, open(4, 10, 10));
  EXPECT_EQ(h.only_error(kAlice), ErrorCode::overloaded);
  EXPECT_NE(h.replies<ErrorReply>(kAlice)[0].error.message.find("client_opens_waiting_max"), std::string::npos);
  EXPECT_TRUE(h.server.holds_work(kAlice));
  h.input(PeerUnreachable{kAlice, "gone"});
  EXPECT_EQ(h.server.waiting_opens(), 0u);
  EXPECT_FALSE(h.server.holds_work(kAlice));
  EXPECT_TRUE(h.server.holds_work(kBob));
  h.receive(kBob, CloseSession{1});
  EXPECT_FALSE(h.server.holds_work(kBob));
  EXPECT_EQ(h.server.cache_tokens_free(), 100u);
}

TEST(BlockServerLimits, RunningPassKeepsItsClientBusyUntilItFinishes) {
  Harness h(config());
  h.receive(kCarol, forward(1, 1, 2));
  const ComputeRequest running = h.all<StartCompute>().at(0).request;
  EXPECT_TRUE(h.server.holds_work(kCarol));
  h.finish(running);
  EXPECT_FALSE(h.server.holds_work(kCarol));
}

// One open the size of the cache used to block everyone for the full idle timeout (300 s).
TEST(BlockServerLimits, IdleSessionIsClosedSoonerWhileOthersWaitForCache) {
  BlockServerConfig c = config(100);
  c.session_idle_timeout_s = 100;
  c.session_idle_contended_s = 5;
  c.cache_wait_max_s = 60;
  Harness h(c);
  h.receive(kAlice, open(1, 100));
  EXPECT_EQ(h.all<SetTimer>().size(), 1u);  // nobody waits yet: only Alice's idle timer
  h.now = 1;
  h.receive(kBob, open(2, 50, 30));  // waits
  std::vector<SetTimer> timers = h.all<SetTimer>();
  ASSERT_EQ(timers.size(), 2u);  // Bob's wait, and the contention check at Alice's 0 + 5
  EXPECT_EQ(timers[1].at, 5.0);
  // Alice steps at 3, so at 5 she is not idle; the check comes back for her at 3 + 5.
  h.now = 3;
  h.receive(kAlice, step(1, 1, 0, 2));
  h.finish(h.all<StartCompute>().at(0).request);
  h.now = 5;
  h.input(TimerFired{timers[1].timer});
  EXPECT_TRUE(h.replies<ErrorReply>(kAlice).empty());
  timers = h.all<SetTimer>();
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].at, 8.0);
  h.now = 8;
  h.input(TimerFired{timers[0].timer});
  ASSERT_EQ(h.only_error(kAlice), ErrorCode::session_closed);
  EXPECT_NE(h.replies<ErrorReply>(kAlice)[0].error.message.find("wait for cache room"), std::string::npos);
  EXPECT_EQ(h.replies<SessionOpened>(kBob).size(), 1u);
}

TEST(BlockServerLimits, IdleSessionStaysTheFullTimeoutWhenNobodyWaits) {
  BlockServerConfig c = config(100);
  c.session_idle_timeout_s = 100;
  c.session_idle_contended_s = 5;
  Harness h(c);
  h.receive(kAlice, open(1, 100));
  EXPECT_EQ(h.all<SetTimer>().size(), 1u);  // only the ordinary idle timer
  EXPECT_EQ(h.all<SetTimer>()[0].at, 100.0);
}

// Random sequences of opens, steps, passes, closes, timers and disconnects from a few clients:
// whatever happens, once every client is gone the books are empty and the cache is all free.
TEST(BlockServerLimits, BooksBalanceAfterRandomTrafficAndDisconnects) {
  const uint64_t seed = test::test_seed(25);
  Rng rng(seed);
  for (int round = 0; round < 200; ++round) {
    BlockServerConfig c = config(100);
    c.max_batch = round % 2 == 0 ? 1 : 4;
    c.batch_wait_s = round % 4 == 3 ? 1.0 : 0.0;
    c.client_cache_tokens_max = 60;
    c.client_opens_waiting_max = 2;
    c.client_tasks_queued_max = 2;
    c.tasks_queued_max = 4;
    c.request_tokens_max = 6;
    c.session_idle_timeout_s = 50;
    c.session_idle_contended_s = 3;
    Harness h(c);
    std::vector<SetTimer> timers;
    std::vector<ComputeRequest> running;
    const PeerId peers[] = {kAlice, kBob, kCarol};
    for (int event = 0; event < 60; ++event) {
      const PeerId who = peers[rng.below(3)];
      const uint64_t id = 1 + rng.below(4);
      h.now += static_cast<double>(rng.below(3));
      switch (rng.below(7)) {
        case 0:
          h.receive(who, open(id, static_cast<uint32_t>(1 + rng.below(70)), rng.below(2) ? 5.0 : 0.0));
          break;
        case 1:
          h.receive(who, step(id, event, 0, static_cast<uint32_t>(1 + rng.below(3))));
          break;
        case 2:
          h.receive(who, forward(100 + event, 1, static_cast<uint32_t>(1 + rng.below(8))));
          break;
        case 3:
          h.receive(who, CloseSession{id});
          break;
        case 4:
          if (!timers.empty()) {
            const size_t i = rng.below(timers.size());
            h.now = std::max(h.now, timers[i].at);
            h.input(TimerFired{timers[i].timer});
            timers.erase(timers.begin() + static_cast<ptrdiff_t>(i));
          }
          break;
        case 5:
          if (!running.empty()) {
            h.finish(running.front());
            running.erase(running.begin());
          }
          break;
        case 6:
          h.input(PeerUnreachable{who, "gone"});
          break;
      }
      for (const auto& t : h.all<SetTimer>()) timers.push_back(t);
      for (const auto& r : h.started()) running.push_back(r);
    }
    for (const PeerId who : peers) {
      h.input(PeerUnreachable{who, "gone"});
      for (const auto& r : h.started()) running.push_back(r);
    }
    while (!running.empty()) {
      h.finish(running.front());
      running.erase(running.begin());
      for (const auto& r : h.started()) running.push_back(r);
    }
    for (const PeerId who : peers) ASSERT_FALSE(h.server.holds_work(who)) << "round " << round << ", seed " << seed;
    ASSERT_EQ(h.server.cache_tokens_free(), 100u) << "round " << round << ", seed " << seed;
    ASSERT_EQ(h.server.open_sessions(), 0u);
    ASSERT_EQ(h.server.running_batches(), 0u);
  }
}

TEST(BlockServer, LeavingAnswersEverySessionOpenAndPassSpanNotServedSoClientsRecoverAtOnce) {
  Harness h(config(100));
  h.receive(kAlice, open(7, 60));  // open, idle
  h.receive(kBob, open(8, 30));    // open, its step running
  h.receive(kBob, step(8, 3, 0, 2));
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  h.receive(kCarol, open(9, 50, /*wait_s=*/10));  // waits for cache room
  ASSERT_TRUE(h.replies<SessionOpened>(kCarol).empty());
  const Activation x = make_activation({1, 2, kHidden}, std::vector<float>(2 * kHidden, 1.0f));
  h.receive(kCarol, ForwardRequest{11, "m", {2, 6}, "", Compression::none, x, std::nullopt, std::nullopt});  // queued
  h.effects.clear();
  h.server.leave("the server moved to blocks [6, 10)", h.effects);
  for (auto [peer, id] : {std::pair{kAlice, 7}, {kBob, 8}}) {
    const auto errors = h.replies<ErrorReply>(peer);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].request_id, uint64_t(id));
    EXPECT_EQ(errors[0].step_id, 0u) << "the error concerns the session, whatever step is in flight";
    EXPECT_EQ(errors[0].error.code, ErrorCode::span_not_served);
    EXPECT_NE(errors[0].error.message.find("moved to blocks [6, 10)"), std::string::npos);
  }
  std::set<uint64_t> carol;
  for (const auto& e : h.replies<ErrorReply>(kCarol)) {
    EXPECT_EQ(e.error.code, ErrorCode::span_not_served);
    carol.insert(e.request_id);
  }
  EXPECT_EQ(carol, (std::set<uint64_t>{9, 11})) << "the waiting open and the queued forward";
  EXPECT_EQ(h.server.open_sessions(), 0u);
  EXPECT_EQ(h.server.waiting_opens(), 0u);
  EXPECT_EQ(h.server.queued_tasks(), 0u);
  EXPECT_EQ(h.server.running_tasks(), 0u);
  EXPECT_FALSE(h.server.holds_work(kAlice) || h.server.holds_work(kBob) || h.server.holds_work(kCarol));
  // Alice's idle cache is dropped; Bob's goes with the compute still running on it.
  EXPECT_EQ(h.all<DropCache>().size(), 1u);
}

TEST(BlockServer, AServerWithoutASpanRefusesEveryRequestByItsId) {
  const Error loading{ErrorCode::span_not_served, "loading blocks [2, 6)"};
  const auto opened = refusal(open(7, 10), loading);
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->request_id, 7u);
  const auto stepped = refusal(step(7, 4, 0, 1), loading);
  ASSERT_TRUE(stepped.has_value());
  EXPECT_EQ(stepped->request_id, 7u);
  EXPECT_EQ(stepped->step_id, 4u);
  EXPECT_EQ(refusal(InfoRequest{5}, loading)->request_id, 5u);
  EXPECT_EQ(refusal(InfoRequest{5}, loading)->error.message, "loading blocks [2, 6)");
  EXPECT_FALSE(refusal(CloseSession{7}, loading).has_value()) << "a close needs no answer";
  EXPECT_FALSE(refusal(ErrorReply{1, 0, loading}, loading).has_value()) << "never answer an error";
}

// Continuous batching: decode steps of different sessions share one computation.

BlockServerConfig batching(uint32_t max_batch, double wait_s = 0) {
  BlockServerConfig c = config(200);
  c.max_batch = max_batch;
  c.batch_wait_s = wait_s;
  return c;
}

// Opens sessions 1..n of 20 positions, one per peer (peers 1..n).
void open_sessions(Harness& h, uint64_t n) {
  for (uint64_t i = 1; i <= n; ++i) {
    h.receive(PeerId{i}, open(i, 20));
    ASSERT_EQ(h.replies<SessionOpened>(PeerId{i}).size(), 1u);
  }
}

TEST(BlockServerBatching, DecodeStepsQueuedBehindARunningStepStartAsOneBatch) {
  Harness h(batching(8));
  open_sessions(h, 4);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  ASSERT_EQ(h.all<StartCompute>().size(), 1u) << "a lone step starts at once";
  const ComputeRequest first = h.all<StartCompute>()[0].request;
  for (uint64_t i = 2; i <= 4; ++i) {
    h.receive(PeerId{i}, step(i, 1, 0, 1));
    EXPECT_TRUE(h.started().empty()) << "one slot, busy";
  }
  h.finish(first);
  ASSERT_EQ(h.all<StartBatch>().size(), 1u);
  const auto batch = h.all<StartBatch>()[0].requests;
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(h.server.running_batches(), 1u);
  std::set<CacheId> caches;
  for (const auto& r : batch) caches.insert(r.cache_id);
  EXPECT_EQ(caches.size(), 3u) << "each step keeps its own session's cache";
  // Each session gets its own reply, and the slot frees only when the whole batch is done.
  for (size_t i = 0; i < batch.size(); ++i) {
    h.finish(batch[i]);
    const PeerId peer{i + 2};
    ASSERT_EQ(h.replies<StepResult>(peer).size(), 1u);
    EXPECT_EQ(h.replies<StepResult>(peer)[0].session_id, i + 2);
    EXPECT_EQ(h.server.running_batches(), i + 1 < batch.size() ? 1u : 0u);
  }
}

TEST(BlockServerBatching, MaxBatchOneRunsEveryStepAlone) {
  Harness h(batching(1));
  open_sessions(h, 3);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  ComputeRequest running = h.all<StartCompute>().at(0).request;
  for (uint64_t i = 2; i <= 3; ++i) h.receive(PeerId{i}, step(i, 1, 0, 1));
  for (int next = 0; next < 2; ++next) {
    h.finish(running);
    EXPECT_TRUE(h.all<StartBatch>().empty());
    ASSERT_EQ(h.all<StartCompute>().size(), 1u);
    running = h.all<StartCompute>()[0].request;
  }
  h.finish(running);
  EXPECT_TRUE(h.started().empty());
  EXPECT_EQ(h.server.running_batches(), 0u);
}

TEST(BlockServerBatching, BatchesStayWithinMaxRowsAndAPrefillRunsAlone) {
  BlockServerConfig c = batching(4);
  c.prefill_chunk = 0;  // never split (prefill_chunk_test.cpp: chunks of a longer step)
  Harness h(c);
  open_sessions(h, 6);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  const ComputeRequest first = h.all<StartCompute>().at(0).request;
  h.receive(PeerId{2}, step(2, 1, 0, 10));  // a prefill of 10 rows: more than max_batch
  h.receive(PeerId{3}, step(3, 1, 0, 2));
  h.receive(PeerId{4}, step(4, 1, 0, 1));
  h.receive(PeerId{5}, step(5, 1, 0, 2));  // would make 5 rows with 3 and 4
  h.receive(PeerId{6}, step(6, 1, 0, 1));
  h.finish(first);
  ASSERT_EQ(h.all<StartCompute>().size(), 1u) << "the prefill heads the queue and runs alone";
  EXPECT_EQ(h.all<StartCompute>()[0].request.new_tokens, 10u);
  h.finish(h.all<StartCompute>()[0].request);
  ASSERT_EQ(h.all<StartBatch>().size(), 1u);
  const auto batch = h.all<StartBatch>()[0].requests;
  std::vector<uint32_t> tokens;
  for (const auto& r : batch) tokens.push_back(r.new_tokens);
  EXPECT_EQ(tokens, (std::vector<uint32_t>{2, 1, 1})) << "arrival order, skipping what does not fit";
  for (const auto& r : batch) h.finish(r);
  ASSERT_EQ(h.all<StartCompute>().size(), 1u) << "the step that did not fit runs next";
  EXPECT_EQ(h.all<StartCompute>()[0].request.new_tokens, 2u);
}

TEST(BlockServerBatching, PassesAndOtherAdaptersNeverJoinABatch) {
  BlockServerConfig c = batching(8);
  c.adapters = {"a"};
  Harness h(c);
  open_sessions(h, 2);
  OpenSession with_adapter = open(3, 20);
  with_adapter.adapter = "a";
  h.receive(PeerId{3}, with_adapter);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  const ComputeRequest first = h.all<StartCompute>().at(0).request;
  h.receive(PeerId{9}, forward(50, 1, 1));
  h.receive(PeerId{3}, step(3, 1, 0, 1));
  h.receive(PeerId{2}, step(2, 1, 0, 1));
  h.finish(first);
  // Step 3 heads the inference queue; step 2 uses no adapter, so each runs alone, then the forward.
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.adapter, "a");
  h.finish(h.all<StartCompute>()[0].request);
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.adapter, "");
  EXPECT_EQ(h.all<StartCompute>()[0].request.kind, ComputeKind::inference);
  h.finish(h.all<StartCompute>()[0].request);
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.kind, ComputeKind::forward);
  EXPECT_TRUE(h.all<StartBatch>().empty());
}

TEST(BlockServerBatching, OneSessionsFailureInABatchFailsThatSessionOnly) {
  Harness h(batching(8));
  open_sessions(h, 3);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  const ComputeRequest first = h.all<StartCompute>().at(0).request;
  h.receive(PeerId{2}, step(2, 1, 0, 3));
  h.receive(PeerId{3}, step(3, 1, 0, 2));
  h.finish(first);
  const auto batch = h.all<StartBatch>().at(0).requests;
  ASSERT_EQ(batch.size(), 2u);
  h.input(ComputeFinished{batch[0].task_id, Error{ErrorCode::bad_request, "adapter missing"}});
  EXPECT_EQ(h.only_error(PeerId{2}), ErrorCode::bad_request);
  h.finish(batch[1]);
  ASSERT_EQ(h.replies<StepResult>(PeerId{3}).size(), 1u);
  // The failed session goes on from where it was: its next step starts at 0 again.
  h.receive(PeerId{2}, step(2, 2, 0, 1));
  ASSERT_EQ(h.all<StartCompute>().size(), 1u);
  EXPECT_EQ(h.all<StartCompute>()[0].request.cache_length, 0u);
  // The one that succeeded continues at its new length.
  h.receive(PeerId{3}, step(3, 2, 2, 1));
  EXPECT_TRUE(h.replies<ErrorReply>(PeerId{3}).empty());
}

TEST(BlockServerBatching, AClosedSessionsCacheIsDroppedOnlyAfterItsBatchFinishes) {
  Harness h(batching(8));
  open_sessions(h, 3);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  const ComputeRequest first = h.all<StartCompute>().at(0).request;
  h.receive(PeerId{2}, step(2, 1, 0, 1));
  h.receive(PeerId{3}, step(3, 1, 0, 1));
  h.finish(first);
  const auto batch = h.all<StartBatch>().at(0).requests;
  h.receive(PeerId{2}, CloseSession{2});
  EXPECT_TRUE(h.all<DropCache>().empty());
  h.input(PeerUnreachable{PeerId{3}, "gone"});
  EXPECT_TRUE(h.all<DropCache>().empty());
  h.finish(batch[0]);
  ASSERT_EQ(h.all<DropCache>().size(), 1u);
  EXPECT_EQ(h.all<DropCache>()[0].cache_id, batch[0].cache_id);
  h.finish(batch[1]);
  ASSERT_EQ(h.all<DropCache>().size(), 1u);
  EXPECT_EQ(h.server.running_batches(), 0u);
  EXPECT_EQ(h.server.open_sessions(), 1u);
}

TEST(BlockServerBatching, ALoneSessionIsNeverHeldForABatchWait) {
  Harness h(batching(8, 0.5));
  open_sessions(h, 1);
  h.now = 3;
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  EXPECT_EQ(h.started().size(), 1u);
}

TEST(BlockServerBatching, BatchWaitHoldsAStepWhileAnotherSessionCouldJoinUntilFullOrDue) {
  Harness h(batching(3, 0.5));
  open_sessions(h, 4);
  h.now = 10;
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  EXPECT_TRUE(h.started().empty());
  ASSERT_EQ(h.all<SetTimer>().size(), 1u);
  EXPECT_DOUBLE_EQ(h.all<SetTimer>()[0].at, 10.5);
  const TimerId timer = h.all<SetTimer>()[0].timer;
  h.now = 10.1;
  h.receive(PeerId{2}, step(2, 1, 0, 1));
  EXPECT_TRUE(h.started().empty());
  h.now = 10.2;
  h.receive(PeerId{3}, step(3, 1, 0, 1));  // full: three rows
  ASSERT_EQ(h.all<StartBatch>().size(), 1u);
  EXPECT_EQ(h.all<StartBatch>()[0].requests.size(), 3u);
  const auto full = h.all<StartBatch>()[0].requests;
  for (const auto& r : full) h.finish(r);
  // Due: the held step starts alone when its wait ends.
  h.now = 11;
  h.receive(PeerId{4}, step(4, 1, 0, 1));
  EXPECT_TRUE(h.started().empty());
  h.now = 11.5;
  h.input(TimerFired{timer});
  ASSERT_EQ(h.started().size(), 1u);
  EXPECT_EQ(h.started()[0].cache_length, 0u);
}

TEST(BlockServerBatching, LoadCountsRecentlyActiveSessionsAndTheRecentStepTime) {
  Harness h(batching(4));
  open_sessions(h, 3);
  EXPECT_EQ(h.server.load(0).active_sessions, 3u) << "just opened";
  EXPECT_EQ(h.server.load(0).step_s, 0.0);
  EXPECT_EQ(h.server.load(0).max_batch, 4u);
  h.receive(PeerId{1}, step(1, 1, 0, 1));
  const ComputeRequest r = h.all<StartCompute>().at(0).request;
  h.now = 0.25;
  h.finish(r);
  EXPECT_DOUBLE_EQ(h.server.load(h.now).step_s, 0.25);
  h.now = 4;
  h.receive(PeerId{1}, step(1, 2, 1, 1));
  h.now = 4.05;
  h.finish(h.all<StartCompute>().at(0).request);
  EXPECT_DOUBLE_EQ(h.server.load(h.now).step_s, 0.8 * 0.25 + 0.2 * 0.05) << "a moving average";
  EXPECT_EQ(h.server.load(9).active_sessions, 1u) << "sessions 2 and 3 have been idle for over 5 s";
}

TEST(BlockServerBatching, LoadAnnouncesTheRowsArrivingStepsFindAheadAndForgetsThemWhenIdle) {
  Harness h(batching(1));
  open_sessions(h, 3);
  h.receive(PeerId{1}, step(1, 1, 0, 1));  // finds nothing ahead and starts
  const ComputeRequest first = h.all<StartCompute>().at(0).request;
  h.receive(PeerId{2}, step(2, 1, 0, 1));  // finds the running row
  h.receive(PeerId{3}, step(3, 1, 0, 2));  // finds the running row and a queued one
  EXPECT_NEAR(h.server.load(h.now).rows_ahead, 0.9 * 0.1 + 0.1 * 2, 1e-12);
  h.finish(first);
  h.finish(h.all<StartCompute>().at(0).request);
  h.finish(h.all<StartCompute>().at(0).request);
  h.now = 30;
  EXPECT_EQ(h.server.load(h.now).rows_ahead, 0.0) << "no step arrived lately and nothing is queued";
}

}  // namespace
}  // namespace bouquet::core

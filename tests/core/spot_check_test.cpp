// Spot checks (core/spot_check.h): the tolerance each compression allows, and in the virtual swarm
// a lying server caught within the steps the rate predicts, the text ending as the honest one,
// and honest servers never taken for liars.
#include "core/spot_check.h"

#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "fake-12/0123abcd";

BlockServerConfig server_config(BlockSpan span) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.span = span;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 20;
  return c;
}

GenerationSpec generation(uint64_t session_id, double rate, uint32_t new_tokens,
                          Compression compression = Compression::none) {
  GenerationSpec g;
  g.session.session_id = session_id;
  g.session.model_id = kModel;
  g.session.num_blocks = kBlocks;
  g.session.hidden_size = kHidden;
  g.session.max_length = 4 + new_tokens + 1;
  g.session.reply_timeout_s = 2;
  g.session.compression = compression;
  g.session.spot_check_rate = rate;
  g.prompt_tokens = 4;
  g.new_tokens = new_tokens;
  g.prompt_seed = 99;
  return g;
}

// Values as they arrive after `compression` packed them.
Activation through_wire(const std::vector<float>& values, Compression compression) {
  std::vector<uint8_t> bytes;
  pack_values(values, compression, DType::float32, bytes);
  return make_activation({1, static_cast<uint32_t>(values.size() / 64), 64},
                         unpack_values(bytes, compression, DType::float32, values.size()));
}

TEST(SpotCheckTolerance, HonestNoiseAgreesAndAScaledOutputDoesNotUnderEveryCompression) {
  const uint64_t seed = test_seed(2501);
  Rng rng(seed);
  for (Compression compression : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> honest(64 * 4), other(64 * 4), liar(64 * 4);
      for (size_t i = 0; i < honest.size(); ++i) {
        // Hidden states with an occasional large outlier, as real ones have.
        honest[i] = static_cast<float>(rng.normal() * (i % 37 == 0 ? 50 : 1));
        other[i] = honest[i] * static_cast<float>(1 + 1e-5 * rng.normal());  // another server's summation order
        liar[i] = honest[i] * 1.5f;
      }
      const Activation a = through_wire(honest, compression), b = through_wire(other, compression);
      EXPECT_TRUE(outputs_agree(a, b, compression, kDefaultSpotCheckRtol))
          << to_string(compression) << " trial " << trial << " seed " << seed;
      EXPECT_FALSE(outputs_agree(a, through_wire(liar, compression), compression, kDefaultSpotCheckRtol))
          << to_string(compression) << " trial " << trial << " seed " << seed;
    }
  }
  // The simulator's handles carry no values: it models the cost, never a verdict.
  EXPECT_TRUE(outputs_agree(make_sized_activation({1, 1, 64}), make_sized_activation({1, 1, 64}), Compression::none,
                            kDefaultSpotCheckRtol));
  // A NaN where the other has a number is a mismatch, whatever the tolerance.
  std::vector<float> x(64, 1.0f), y = x;
  y[3] = std::nanf("");
  EXPECT_FALSE(outputs_agree(make_activation({1, 1, 64}, x), make_activation({1, 1, 64}, y), Compression::none, 1));
}

// Three servers hold blocks [0, 6): greedy routing (the furthest reach, ties to the smaller id)
// gives hop 0 to `first`, its check to `checker`, a third opinion to `referee`.
struct LiarSwarm {
  VirtualSwarm swarm;
  PeerId first, back, checker, referee, client;
  explicit LiarSwarm(uint64_t seed) : swarm(seed) {
    std::vector<PeerId> front;
    for (int i = 0; i < 3; ++i) front.push_back(swarm.add_server(server_config({0, 6})));
    std::sort(front.begin(), front.end());
    first = front[0];
    checker = front[1];
    referee = front[2];
    back = swarm.add_server(server_config({6, kBlocks}));
    client = swarm.add_client();
  }
};

std::vector<SpotCheck> with_outcome(const InferenceSession& session, SpotCheckOutcome outcome) {
  std::vector<SpotCheck> out;
  for (const SpotCheck& c : session.spot_checks()) {
    if (c.outcome == outcome) out.push_back(c);
  }
  return out;
}

TEST(SpotCheckSwarm, AtRateOneALiarIsCaughtOnItsFirstWrongStepAndTheTextIsTheHonestOne) {
  LiarSwarm s(7);
  s.swarm.lie_after_steps(s.first, 3);  // the prompt and two tokens honest, then every step wrong
  const GenerationSpec spec = generation(4242, 1.0, 10);
  const size_t g = s.swarm.generate(s.client, spec);
  s.swarm.run();
  const GenerationResult& r = s.swarm.result(g);
  ASSERT_FALSE(r.error) << r.error->to_string();
  EXPECT_EQ(r.outputs, reference_outputs(spec));
  EXPECT_EQ(r.restarts, 0u);  // nothing it said went on unchecked
  const InferenceSession& session = s.swarm.session(g);
  const auto found = with_outcome(session, SpotCheckOutcome::liar_found);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].liar, s.first);
  EXPECT_EQ(found[0].step_id, 4u);  // its 4th step
  EXPECT_EQ(found[0].unverified_from, found[0].begin);
  ASSERT_EQ(found[0].checker.size(), 1u);
  EXPECT_EQ(found[0].checker[0].peer, s.checker);
  ASSERT_EQ(found[0].referee.size(), 1u);
  EXPECT_EQ(found[0].referee[0].peer, s.referee);
  EXPECT_EQ(session.liars(), std::set<PeerId>{s.first});
  for (const Hop& hop : session.chain()) EXPECT_NE(hop.peer, s.first);
  // Every other check agreed (or found no second server for hop 1's blocks).
  EXPECT_EQ(with_outcome(session, SpotCheckOutcome::agreed).size() +
                with_outcome(session, SpotCheckOutcome::no_checker).size() + 1,
            session.spot_checks().size());
}

TEST(SpotCheckSwarm, ALiarIsCaughtWithinTheStepsTheRatePredictsAndTheTextEndsHonest) {
  const uint64_t seed = test_seed(2502);
  constexpr double kRate = 0.2;
  // A liar's wrong steps until one is checked: geometric, P(more than k) = 0.8^k; 0.8^62 < 1e-6.
  constexpr uint32_t kBound = 62;
  constexpr uint32_t kHonestSteps = 3;
  uint64_t total_wrong_steps = 0, restarts = 0;
  constexpr int kRuns = 20;
  for (int run = 0; run < kRuns; ++run) {
    Rng ids = Rng(seed).derive(run);
    LiarSwarm s(seed + run);
    s.swarm.lie_after_steps(s.first, kHonestSteps);
    const GenerationSpec spec = generation(draw_session_id(ids), kRate, kHonestSteps + kBound + 4);
    const size_t g = s.swarm.generate(s.client, spec);
    s.swarm.run();
    const GenerationResult& r = s.swarm.result(g);
    ASSERT_FALSE(r.error) << r.error->to_string() << " run " << run << " seed " << seed;
    EXPECT_EQ(r.outputs, reference_outputs(spec)) << "run " << run << " seed " << seed;
    const auto found = with_outcome(s.swarm.session(g), SpotCheckOutcome::liar_found);
    ASSERT_EQ(found.size(), 1u) << "run " << run << " seed " << seed;
    EXPECT_EQ(found[0].liar, s.first);
    const uint64_t wrong_steps = found[0].step_id - kHonestSteps;
    EXPECT_GE(wrong_steps, 1u);
    EXPECT_LE(wrong_steps, kBound) << "run " << run << " seed " << seed;
    // Wrong outputs went on before the catch exactly when it was not the first wrong step; then the
    // generation started over without the liar.
    EXPECT_EQ(r.restarts, found[0].unverified_from < found[0].begin ? 1u : 0u) << "run " << run;
    total_wrong_steps += wrong_steps;
    restarts += r.restarts;
  }
  fmt::print(
      "seed {}: {} runs at rate {}: {:.1f} wrong steps before the catch on average (expected {:.1f}), {} "
      "restarts\nreproduce: {}\n",
      seed, kRuns, kRate, double(total_wrong_steps) / kRuns, 1 / kRate, restarts, reproduce_command(seed));
}

TEST(SpotCheckSwarm, HonestServersAreNeverTakenForLiarsUnderAnyCompression) {
  const uint64_t seed = test_seed(2503);
  for (Compression compression : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    uint64_t checks = 0;
    for (int run = 0; run < 10; ++run) {
      Rng ids = Rng(seed).derive(run);
      const uint64_t session_id = draw_session_id(ids);
      // The outputs a run without spot checks gives, through the same compression.
      LiarSwarm plain(seed + run);
      const size_t g0 = plain.swarm.generate(plain.client, generation(session_id, 0, 12, compression));
      plain.swarm.run();
      LiarSwarm s(seed + run);
      const size_t g = s.swarm.generate(s.client, generation(session_id, 0.5, 12, compression));
      s.swarm.run();
      const GenerationResult& r = s.swarm.result(g);
      ASSERT_FALSE(r.error) << r.error->to_string();
      EXPECT_EQ(r.outputs, plain.swarm.result(g0).outputs) << to_string(compression) << " run " << run;
      const InferenceSession& session = s.swarm.session(g);
      EXPECT_TRUE(session.liars().empty()) << to_string(compression) << " run " << run << " seed " << seed;
      EXPECT_TRUE(session.recoveries().empty()) << to_string(compression) << " run " << run << " seed " << seed;
      // Hop 1's blocks have one server: its replies go on unchecked.
      EXPECT_EQ(with_outcome(session, SpotCheckOutcome::agreed).size() +
                    with_outcome(session, SpotCheckOutcome::no_checker).size(),
                session.spot_checks().size());
      EXPECT_FALSE(with_outcome(session, SpotCheckOutcome::agreed).empty());
      checks += session.spot_checks().size();
    }
    EXPECT_GT(checks, 0u);
    fmt::print("{}: {} spot checks, none disagreed (seed {})\n", to_string(compression), checks, seed);
  }
}

TEST(SpotCheckSwarm, ALyingCheckerIsOutvotedAndTheCheckedServerKeepsItsHop) {
  LiarSwarm s(8);
  s.swarm.lie_after_steps(s.checker, 0);  // every answer the checker gives is wrong
  const GenerationSpec spec = generation(4242, 1.0, 6);
  const size_t g = s.swarm.generate(s.client, spec);
  s.swarm.run();
  const GenerationResult& r = s.swarm.result(g);
  ASSERT_FALSE(r.error) << r.error->to_string();
  EXPECT_EQ(r.outputs, reference_outputs(spec));
  const InferenceSession& session = s.swarm.session(g);
  const auto lied = with_outcome(session, SpotCheckOutcome::checker_lied);
  ASSERT_EQ(lied.size(), 1u);  // then it is avoided: later checks of hop 0 go to the referee
  EXPECT_EQ(lied[0].liar, s.checker);
  EXPECT_EQ(session.liars(), std::set<PeerId>{s.checker});
  EXPECT_EQ(session.chain().front().peer, s.first);
  EXPECT_TRUE(session.recoveries().empty());
}

TEST(SpotCheckSwarm, ASilentCheckerLeavesTheReplyUncheckedAndIsBanned) {
  LiarSwarm s(11);
  s.swarm.drop_if([&](PeerId, PeerId to, const Message&, Time) { return to == s.checker; });
  const GenerationSpec spec = generation(4242, 1.0, 4);
  const size_t g = s.swarm.generate(s.client, spec);
  s.swarm.run();
  const GenerationResult& r = s.swarm.result(g);
  ASSERT_FALSE(r.error) << r.error->to_string();
  EXPECT_EQ(r.outputs, reference_outputs(spec));
  const InferenceSession& session = s.swarm.session(g);
  const auto failed = with_outcome(session, SpotCheckOutcome::checker_failed);
  ASSERT_EQ(failed.size(), 1u);  // then banned: the next checks of hop 0 go to the referee
  EXPECT_EQ(failed[0].checker.at(0).peer, s.checker);
  EXPECT_GT(with_outcome(session, SpotCheckOutcome::agreed).size(), 0u);
  EXPECT_TRUE(session.liars().empty());
  EXPECT_TRUE(session.recoveries().empty());
}

TEST(SpotCheckSwarm, WhenTheThirdServerAgreesWithNeitherTheCheckedHopIsReplaced) {
  LiarSwarm s(12);
  s.swarm.lie_after_steps(s.first, 0, 1.5f);
  s.swarm.lie_after_steps(s.checker, 0, 2.0f);  // a different lie: the two disagree
  const GenerationSpec spec = generation(4242, 1.0, 6);
  const size_t g = s.swarm.generate(s.client, spec);
  s.swarm.run();
  const GenerationResult& r = s.swarm.result(g);
  ASSERT_FALSE(r.error) << r.error->to_string();
  const InferenceSession& session = s.swarm.session(g);
  const auto undecided = with_outcome(session, SpotCheckOutcome::undecided);
  ASSERT_GE(undecided.size(), 1u);
  EXPECT_EQ(undecided[0].checked, s.first);
  EXPECT_TRUE(session.liars().empty());  // nobody proven a liar
  ASSERT_GE(session.recoveries().size(), 1u);
  EXPECT_EQ(session.recoveries()[0].failed_peer, s.first);
  EXPECT_EQ(session.chain().front().peer, s.referee);  // the only server both bans leave
  EXPECT_EQ(r.outputs, reference_outputs(spec));       // the first's lies were all held back
}

TEST(SpotCheckSwarm, WithNoOtherServerForASpanItsRepliesGoOnUnchecked) {
  VirtualSwarm swarm(9);
  swarm.add_server(server_config({0, 6}));
  swarm.add_server(server_config({6, kBlocks}));
  const GenerationSpec spec = generation(4242, 1.0, 4);
  const size_t g = swarm.generate(swarm.add_client(), spec);
  swarm.run();
  ASSERT_FALSE(swarm.result(g).error);
  EXPECT_EQ(swarm.result(g).outputs, reference_outputs(spec));
  const InferenceSession& session = swarm.session(g);
  EXPECT_EQ(with_outcome(session, SpotCheckOutcome::no_checker).size(), session.spot_checks().size());
  EXPECT_FALSE(session.spot_checks().empty());
}

TEST(SpotCheckSwarm, AtRateZeroNothingIsChecked) {
  LiarSwarm s(10);
  s.swarm.lie_after_steps(s.first, 0);
  const size_t g = s.swarm.generate(s.client, generation(4242, 0, 4));
  s.swarm.run();
  EXPECT_TRUE(s.swarm.session(g).spot_checks().empty());
  EXPECT_NE(s.swarm.result(g).outputs, reference_outputs(generation(4242, 0, 4)));  // the lie goes unseen
}

PassSpec pass(uint64_t seed, double rate, Compression compression = Compression::none) {
  PassSpec p;
  p.pass.model_id = kModel;
  p.pass.num_blocks = kBlocks;
  p.pass.hidden_size = kHidden;
  p.pass.compression = compression;
  p.pass.reply_timeout_s = 2;
  p.pass.max_tokens_per_request = 8;  // sub-batches of 2 sequences: four chains, routed apart
  p.pass.spot_check_rate = rate;
  p.pass.spot_check_seed = seed;
  p.batch = 8;
  p.tokens = 4;
  p.input_seed = seed;
  return p;
}

TEST(SpotCheckPass, ALyingServerNeverReachesAForwardAtRateOneAndIsAvoidedFromThen) {
  const uint64_t seed = test_seed(2504);
  uint64_t caught = 0;
  for (int run = 0; run < 10; ++run) {
    LiarSwarm s(seed + run);
    s.swarm.lie_after_steps(s.first, 0);  // every forward it computes is wrong
    const PassSpec spec = pass(seed + run, 1.0);
    const size_t t = s.swarm.train(s.client, spec);
    s.swarm.run();
    const PassResult& r = s.swarm.pass_result(t);
    const PassResult reference = reference_pass(spec);
    ASSERT_FALSE(r.error) << r.error->to_string() << " run " << run << " seed " << seed;
    EXPECT_EQ(r.outputs, reference.outputs) << "run " << run << " seed " << seed;
    EXPECT_EQ(r.grad_inputs, reference.grad_inputs) << "run " << run << " seed " << seed;
    const PassSession& session = s.swarm.pass_session(t);
    // Whenever the liar took part in a check, as the checked server or as a checker, it was found.
    bool involved = false;
    for (const SpotCheck& c : session.spot_checks()) {
      involved |= c.checked == s.first;
      for (const Hop& hop : c.checker) involved |= hop.peer == s.first;
    }
    EXPECT_EQ(session.liars(), involved ? std::set<PeerId>{s.first} : std::set<PeerId>{}) << "run " << run;
    for (const Chain& chain : session.chains()) {
      for (const Hop& hop : chain) EXPECT_NE(hop.peer, s.first) << "run " << run;
    }
    caught += involved;
  }
  EXPECT_GT(caught, 0u);
  fmt::print("seed {}: the liar was in a check and caught in {} of 10 passes\n", seed, caught);
}

TEST(SpotCheckPass, HonestServersAreNeverTakenForLiarsUnderAnyCompression) {
  const uint64_t seed = test_seed(2505);
  for (Compression compression : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    uint64_t agreed = 0;
    for (int run = 0; run < 10; ++run) {
      LiarSwarm plain(seed + run), s(seed + run);
      const size_t t0 = plain.swarm.train(plain.client, pass(seed + run, 0, compression));
      const size_t t = s.swarm.train(s.client, pass(seed + run, 1.0, compression));
      plain.swarm.run();
      s.swarm.run();
      ASSERT_FALSE(s.swarm.pass_result(t).error);
      EXPECT_EQ(s.swarm.pass_result(t).outputs, plain.swarm.pass_result(t0).outputs) << to_string(compression);
      const PassSession& session = s.swarm.pass_session(t);
      EXPECT_TRUE(session.liars().empty()) << to_string(compression) << " run " << run << " seed " << seed;
      EXPECT_TRUE(session.recoveries().empty()) << to_string(compression) << " run " << run << " seed " << seed;
      for (const SpotCheck& c : session.spot_checks()) {
        EXPECT_TRUE(c.outcome == SpotCheckOutcome::agreed || c.outcome == SpotCheckOutcome::no_checker)
            << to_string(c.outcome);
        agreed += c.outcome == SpotCheckOutcome::agreed;
      }
    }
    EXPECT_GT(agreed, 0u);
  }
}

}  // namespace
}  // namespace bouquet::test

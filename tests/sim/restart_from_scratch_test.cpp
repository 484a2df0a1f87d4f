// The reference paper's "caching with restarts" baseline (the core's restart_from_scratch policy):
// a failure throws the generation away and it starts again from its first step; only the attempt
// that gets through counts, the clock runs across all of them, and work past the run's end does
// not finish.
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

namespace bouquet::sim {
namespace {

// bloom-7b1 f16 on two pinned A100 stages; one client generating 1 + 63 tokens.
RunResult run(const std::string& recovery, double p, double duration_s = 3600, uint64_t seed = 4) {
  const std::string text = fmt::format(R"(version: 1
name: from-scratch
seed: {}
duration_s: {}
network: {{model: CM02, crosstraffic: false, tcp_window_bytes: 0, why: exact arithmetic}}
model: {{name: bloom-7b1, weights: f16, activations: float16, wire_compression: none}}
cost: {{efficiency: {{f16: 0.5}}, block_overhead_s: 0.001, request_overhead_s: 0.002, client_efficiency: 1}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}}
servers:
  - {{name: a, gpu: a100-80gb, region: lab, blocks: [0, 15]}}
  - {{name: b, gpu: a100-80gb, region: lab, blocks: [15, 30]}}
clients:
  - {{name: c, device: cpu-32core, region: lab, start_s: 1, work: {{kind: generate, prefix_tokens: 1, new_tokens: 63}}}}
churn: {{activation_failure_probability: {}}}
policies: {{recovery: {}, ban_base_s: 0}}
directory: {{lookup_round_trips: 0}}
)",
                                       seed, duration_s, p, recovery);
  return simulate_isolated(load_scenario_text(text, "from-scratch.yaml", {}).base);
}

TEST(RestartFromScratch, OnlyTheAttemptThatGetsThroughCountsAndTheClockRunsAcrossAll) {
  std::cout << "seed 4; reproduce: sim_tests --gtest_filter=RestartFromScratch.*\n";
  const RunResult clean = run("restart_from_scratch", 0);
  const RunResult scratch = run("restart_from_scratch", 0.01);
  const RunResult replay = run("replay", 0.01);
  for (const auto* r : {&clean, &scratch, &replay}) {
    ASSERT_TRUE(r->all_finished()) << r->clients[0].error;
    EXPECT_EQ(r->clients[0].steps, 64);
    EXPECT_EQ(r->clients[0].tokens, 64);
  }
  const ClientResult& s = scratch.clients[0];
  fmt::print(
      "p = 1e-2: {} restarts from scratch regenerating {} positions, {:.2f} steps/s; replay {:.2f}; "
      "no failures {:.2f}\n",
      s.recoveries, s.positions_replayed, s.steps_per_s(), replay.clients[0].steps_per_s(),
      clean.clients[0].steps_per_s());
  EXPECT_GT(s.recoveries, 0);
  EXPECT_EQ(s.sessions_failed, 0);  // the core's restart_from_scratch restarts within the session
  EXPECT_GT(s.positions_replayed, 0);
  // Every restart repeats steps already done: slower than replaying one stage's history, and
  // slower than no failure at all by at least the positions it generated again.
  EXPECT_LT(s.steps_per_s(), replay.clients[0].steps_per_s());
  const double clean_step_s = clean.clients[0].measured_s / 64;
  EXPECT_GT(s.measured_s, clean.clients[0].measured_s + 0.5 * s.positions_replayed * clean_step_s);
  // A step failing a third of the time (p = 0.2 at each of 2 stages): 64 in a row would take
  // ~10^12 attempts, so the generation does not finish within the run.
  const RunResult hopeless = run("restart_from_scratch", 0.2, 600);
  EXPECT_FALSE(hopeless.all_finished());
  EXPECT_EQ(hopeless.clients[0].error, "did not finish");
  EXPECT_TRUE(std::isnan(hopeless.metric("steps_per_s")));
}

}  // namespace
}  // namespace bouquet::sim

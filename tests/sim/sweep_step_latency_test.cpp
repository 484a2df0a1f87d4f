// The step latency percentiles the churn experiment reports (issue 10): every single-token step a
// client completed, its prompt step left out, recoveries included; they survive the JSON that
// carries results out of the simulation's process.
#include "sim/run_result.h"
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>

namespace bouquet::sim {
namespace {

Scenario tiny(double failure_probability, uint64_t seed) {
  const std::string text = fmt::format(R"(version: 1
name: latency
seed: {}
duration_s: 3600
network: {{model: CM02, why: a test}}
model: {{name: llama-2-7b, weights: f16}}
cost: {{efficiency: {{f16: 0.5}}, block_overhead_s: 0.0003, request_overhead_s: 0.001, client_efficiency: 0.7}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.005}}
servers:
  - {{name: s0, gpu: a100-80gb, region: lab, blocks: [0, 16]}}
  - {{name: s1, gpu: a100-80gb, region: lab, blocks: [16, 32]}}
clients:
  - {{name: c, device: cpu-8core, region: lab, start_s: 1, work: {{kind: generate, prefix_tokens: 64, new_tokens: 99}}}}
churn: {{activation_failure_probability: {}}}
policies: {{ban_base_s: 0}}
)",
                                       seed, failure_probability);
  return load_scenario_text(text, "latency.yaml", {}).base;
}

TEST(SweepStepLatency, AQuietSwarmHasOneStepLatencyAndThePromptIsLeftOut) {
  const RunResult r = simulate_isolated(tiny(0, 1));
  ASSERT_TRUE(r.all_finished());
  ASSERT_FALSE(std::isnan(r.step_latency_p50_s));
  // One client, two hops, nothing failing: every single-token step takes about the same time (the
  // cache it reads grows a little each step), and less than a whole step with the client's own
  // compute (1 / steps/s also counts the 64-token prompt).
  EXPECT_NEAR(r.step_latency_p99_s, r.step_latency_p50_s, 0.01 * r.step_latency_p50_s);
  EXPECT_GT(r.step_latency_p50_s, 2 * 4 * 0.005);  // two hops, each a round trip of 4 x 5 ms
  EXPECT_LT(r.step_latency_p50_s, 1 / r.clients[0].steps_per_s());
}

TEST(SweepStepLatency, RecoveriesShowInTheTailAndSurviveJson) {
  // Failures are drawn from the seed; a failing check names it (rerun with that seed alone).
  for (uint64_t seed : {1, 2, 3}) {
    const RunResult r = simulate_isolated(tiny(0.02, seed));
    ASSERT_FALSE(std::isnan(r.step_latency_p99_s)) << "seed " << seed;
    if (r.clients[0].recoveries == 0) continue;
    EXPECT_GT(r.step_latency_p99_s, 1.5 * r.step_latency_p50_s) << "seed " << seed << ": a step that replayed its "
                                                                 << "history to a reset server is slower";
    const RunResult back = run_result_from_json(to_json(r));
    EXPECT_EQ(back.step_latency_p50_s, r.step_latency_p50_s);
    EXPECT_EQ(back.step_latency_p99_s, r.step_latency_p99_s);
    return;
  }
  FAIL() << "no seed of 1..3 had a recovery at 2% failures per activation";
}

TEST(SweepStepLatency, NoStepMeansNoPercentile) {
  RunResult r;
  r.clients.emplace_back();
  r.summarize_step_latencies();
  EXPECT_TRUE(std::isnan(r.step_latency_p50_s));
  EXPECT_TRUE(run_result_from_json(to_json(r)).step_latency_p99_s != r.step_latency_p99_s);  // NaN again
  r.clients[0].step_latencies_s = {5, 1, 4, 2, 3};
  r.summarize_step_latencies();
  EXPECT_EQ(r.step_latency_p50_s, 3);  // nearest rank: the 3rd of 5
  EXPECT_EQ(r.step_latency_p99_s, 5);
}

}  // namespace
}  // namespace bouquet::sim

// What the churn experiment reports beside throughput: the step latency percentiles
// (every single-token step a client completed, its prompt step left out, recoveries included)
// and the time some block had no server. Both survive the JSON that carries results out of the
// simulation's process.
#include "sim/run_result.h"
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>

namespace bouquet::sim {
namespace {

// Two pinned servers and one generating client; s1 may leave for good after `s1_lifetime_s`.
Scenario tiny(double failure_probability, uint64_t seed, const std::string& s1_lifetime_s = ".inf",
              int new_tokens = 99) {
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
  - {{name: s1, gpu: a100-80gb, region: lab, blocks: [16, 32], lifetime_s: {}}}
clients:
  - {{name: c, device: cpu-8core, region: lab, start_s: 1, work: {{kind: generate, prefix_tokens: 64, new_tokens: {}}}}}
churn: {{activation_failure_probability: {}}}
policies: {{ban_base_s: 0}}
)",
                                       seed, s1_lifetime_s, new_tokens, failure_probability);
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

namespace bouquet::sim {
namespace {

TEST(SweepCoverage, TimeWithABlockUnservedIsCountedFromTheFirstClient) {
  // Everything served: nothing uncovered over the seconds probed (client start to run end).
  const RunResult quiet = simulate_isolated(tiny(0, 1));
  EXPECT_EQ(quiet.uncovered_s, 0);
  EXPECT_NEAR(quiet.coverage_watched_s, quiet.end_s - 1, 1.0);

  // s1 (blocks 16..32) leaves at 20 s for good: from then on until the client gives up and the
  // run ends, its blocks have no server.
  const RunResult lost = simulate_isolated(tiny(0, 1, "20", 5000));
  ASSERT_FALSE(lost.all_finished());
  const double gave_up_s = lost.clients[0].ended_s;  // (end_s is the duration for unfinished work)
  ASSERT_GT(gave_up_s, 30);
  EXPECT_NEAR(lost.uncovered_s, gave_up_s - 20, 1.0);
  EXPECT_NEAR(lost.coverage_watched_s, gave_up_s - 1, 1.0);
  const RunResult back = run_result_from_json(to_json(lost));
  EXPECT_EQ(back.uncovered_s, lost.uncovered_s);
  EXPECT_EQ(back.coverage_watched_s, lost.coverage_watched_s);
}

}  // namespace
}  // namespace bouquet::sim

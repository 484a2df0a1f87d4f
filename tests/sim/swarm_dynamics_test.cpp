// What a swarm does over time, as a user of the simulator sees it: servers that churn leave
// without warning and come back as new processes, clients that generate until the run ends, and
// forward passes split into sub-batches that pipeline through the chain.
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>

namespace bouquet::sim {
namespace {

// bloom-7b1 in f16; one region of 1 Gbit/s links with 1 ms one way to the switch.
std::string scenario_text(uint64_t seed, double duration_s, const std::string& servers, const std::string& clients,
                          const std::string& extra = "") {
  return fmt::format(R"(version: 1
name: dynamics
seed: {}
duration_s: {}
network: {{model: CM02, crosstraffic: false, tcp_window_bytes: 0, why: exact arithmetic}}
model: {{name: bloom-7b1, weights: f16, activations: float16, wire_compression: none}}
cost: {{efficiency: {{f16: 0.5}}, block_overhead_s: 0.001, request_overhead_s: 0.002, client_efficiency: 1}}
directory: {{round_trip_s: 0.05}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}}
servers:
{}
clients:
{}
{})",
                     seed, duration_s, servers, clients, extra);
}

Scenario load(const std::string& text) { return load_scenario_text(text, "dynamics.yaml", {}).base; }

const std::string kOneServer = "  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30], load_bps: 1e11}";
// Starts once the server has joined (5 s join delay) and loaded its blocks.
const std::string kGenerateForever =
    "  - {name: c, device: cpu-32core, region: lab, start_s: 10,\n"
    "     work: {kind: generate, prefix_tokens: 1, new_tokens: 20, repeat: 0}}";

TEST(SwarmDynamics, AContinuousClientGeneratesUntilTheRunEnds) {
  RunResult result = simulate_isolated(load(scenario_text(5, 100, kOneServer, kGenerateForever)));
  ASSERT_EQ(result.clients.size(), 1u);
  const ClientResult& c = result.clients[0];
  // Open-ended work is a result, not a failure; it is measured from the client's start on.
  EXPECT_TRUE(c.finished) << c.error;
  EXPECT_DOUBLE_EQ(c.measured_s, 90);
  EXPECT_GT(c.sessions_finished, 10);
  EXPECT_EQ(c.sessions_failed, 0);
  EXPECT_EQ(c.steps, c.tokens);
  EXPECT_GE(c.steps, 21 * c.sessions_finished);  // the session cut off by the end counts too
  EXPECT_NEAR(result.metric("tokens_per_s"), static_cast<double>(c.tokens) / 90, 1e-9);
  EXPECT_EQ(result.metric("failed_session_share"), 0);
}

TEST(SwarmDynamics, ChurnedServersComeBackAndServeAgain) {
  // The only server leaves after ~30 s on average. Coming back 5 s later (as a new process that
  // reloads its 12 GB at 100 Gbit/s), it serves the client again; never coming back, it leaves
  // the client with nothing but failed sessions.
  auto run = [](double downtime_s) {
    return simulate_isolated(
        load(scenario_text(7, 600, kOneServer, kGenerateForever,
                           fmt::format("churn: {{mean_lifetime_s: 30, mean_downtime_s: {}}}\n", downtime_s))));
  };
  std::cout << "seed 7; reproduce: ctest -R SwarmDynamics.ChurnedServersComeBack\n";
  RunResult back = run(5);
  RunResult gone = run(1e9);
  const ClientResult& b = back.clients[0];
  const ClientResult& g = gone.clients[0];
  EXPECT_TRUE(b.finished) << b.error;
  EXPECT_GT(b.sessions_failed + b.recoveries, 5) << "the server left many times in 600 s";
  EXPECT_GT(b.sessions_finished, 50);
  EXPECT_GT(b.tokens, 5 * g.tokens);
  EXPECT_GT(g.sessions_failed, 10);
  EXPECT_GT(gone.metric("failed_session_share"), back.metric("failed_session_share"));
  // The churn is drawn from the seed: the same seed gives the same run.
  EXPECT_EQ(to_json(run(5)), to_json(back));
}

TEST(SwarmDynamics, SubBatchesPipelineThroughTheChain) {
  // 64 sequences of 128 positions through three servers: as eight concurrent sub-batches of
  // 1024 positions, the servers work on different sub-batches at once, so the pass is faster
  // than as one request, but never more than three times faster (three servers).
  const std::string servers =
      "  - {name: s0, gpu: a100-80gb, region: lab, blocks: [0, 10]}\n"
      "  - {name: s1, gpu: a100-80gb, region: lab, blocks: [10, 20]}\n"
      "  - {name: s2, gpu: a100-80gb, region: lab, blocks: [20, 30]}";
  const std::string client =
      "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
      "     work: {kind: forward, batch: 64, sequence_tokens: 128}}";
  auto run = [&](int64_t sub_batch_tokens) {
    return simulate_isolated(load(scenario_text(
        5, 1000, servers, client, fmt::format("policies: {{sub_batch_tokens: {}}}\n", sub_batch_tokens))));
  };
  RunResult split = run(1024);
  RunResult whole = run(0);
  ASSERT_TRUE(split.all_finished()) << split.clients[0].error;
  ASSERT_TRUE(whole.all_finished()) << whole.clients[0].error;
  EXPECT_EQ(split.clients[0].tokens, 64 * 128);
  EXPECT_EQ(whole.clients[0].tokens, 64 * 128);
  const double speedup = split.metric("tokens_per_s") / whole.metric("tokens_per_s");
  EXPECT_GT(speedup, 1.5);
  EXPECT_LT(speedup, 3.0);
  // Eight requests per hop instead of one, and back.
  EXPECT_EQ(split.messages - whole.messages, 2 * 3 * 7);
}

TEST(SwarmDynamics, AForwardClientKeepsPlanningOnFreshRecordsAndSeesLateJoiners) {
  // Records live 2 x 10 s; the client passes forward batches back to back for ten minutes on an
  // RTX 3060. An A100 on the same blocks joins at 300 s: re-reading the directory, the client's
  // later passes go mostly to it (the planner picks servers in proportion to their throughput).
  const std::string slow = "  - {name: s, gpu: rtx-3060, region: lab, blocks: [0, 30], load_bps: 1e11}";
  const std::string fast_late =
      "\n  - {name: late, gpu: a100-80gb, region: lab, blocks: [0, 30], load_bps: 1e11, join_s: 300}";
  const std::string client =
      "  - {name: c, device: cpu-32core, region: lab, start_s: 10,\n"
      "     work: {kind: forward, batch: 1, sequence_tokens: 512, repeat: 0}}";
  const std::string directory = "directory: {round_trip_s: 0.05, update_period_s: 10}\n";
  std::cout << "seed 11; reproduce: sim_tests --gtest_filter=SwarmDynamics.AForwardClient*\n";
  RunResult alone = simulate_isolated(load(scenario_text(11, 600, slow, client, directory)));
  RunResult joined = simulate_isolated(load(scenario_text(11, 600, slow + fast_late, client, directory)));
  for (const auto* r : {&alone, &joined}) {
    const ClientResult& c = r->clients.at(0);
    EXPECT_TRUE(c.finished) << c.error;
    EXPECT_NEAR(c.measured_s, 590, 1e-6);
  }
  fmt::print("passes: {} on the RTX 3060 alone, {} with the A100 joining at 300 s\n", alone.clients[0].steps,
             joined.clients[0].steps);
  EXPECT_GT(alone.clients[0].steps, 50);
  EXPECT_GT(joined.clients[0].steps, alone.clients[0].steps * 3 / 2);
}

// Two servers of the first span at pinned speeds: the client's chain takes the faster; when that
// one's host goes off mid-generation, the slower takes its blocks over. The run reports who served
// what and the chain's history by server name (what the twin test compares with a real run).
TEST(SwarmDynamics, ARunReportsThePlacementAndTheFirstSessionsChainAndRecoveriesByServerName) {
  const std::string servers =
      "  - {name: slow, gpu: a100-80gb, region: lab, blocks: auto, num_blocks: 15, inference_rps: 10,"
      " throughput_rps: 10}\n"
      "  - {name: back, gpu: a100-80gb, region: lab, blocks: [15, 30]}\n"
      "  - {name: fast, gpu: a100-80gb, region: lab, blocks: auto, num_blocks: 15, inference_rps: 50,"
      " throughput_rps: 50, join_s: 20, lifetime_s: 32}";
  const std::string clients =
      "  - {name: c, device: cpu-32core, region: lab, start_s: 30,\n"
      "     work: {kind: generate, prefix_tokens: 1, new_tokens: 100000}}";
  const RunResult result = simulate_isolated(load(
      scenario_text(3, 200, servers, clients, "policies: {routing: min_latency, join_delay_s: 1, balancing: none}")));
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> placement;
  for (const auto& p : result.placement) placement[p.server] = p.spans;
  EXPECT_EQ(placement["slow"], (std::vector<std::pair<int64_t, int64_t>>{{0, 15}}));
  EXPECT_EQ(placement["back"], (std::vector<std::pair<int64_t, int64_t>>{{15, 30}}));
  // Blocks 0-15 were the weakest when it joined (10 rps against the pinned server's).
  EXPECT_EQ(placement["fast"], (std::vector<std::pair<int64_t, int64_t>>{{0, 15}}));

  ASSERT_EQ(result.clients.size(), 1u);
  const auto& routes = result.clients[0].routes;
  ASSERT_GE(routes.size(), 2u) << result.clients[0].error << " recoveries " << result.clients[0].recoveries << " steps "
                               << result.clients[0].steps;
  EXPECT_EQ(routes[0].kind, "opened");
  ASSERT_EQ(routes[0].hops.size(), 2u);
  EXPECT_EQ(routes[0].hops[0].server, "fast") << "the pinned 50 rps beat 10 rps";
  EXPECT_EQ(routes[0].hops[1].server, "back");
  EXPECT_EQ(routes[1].kind, "recovered");
  EXPECT_EQ(routes[1].failed_server, "fast");
  EXPECT_EQ(routes[1].begin, 0);
  EXPECT_EQ(routes[1].end, 15);
  ASSERT_EQ(routes[1].hops.size(), 1u);
  EXPECT_EQ(routes[1].hops[0].server, "slow");
}

}  // namespace
}  // namespace bouquet::sim

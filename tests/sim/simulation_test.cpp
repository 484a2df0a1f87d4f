// The drivers charge exactly what they promise: a generation through the core's session and
// server takes the cost model's compute times plus latency + wire_bytes (frame header and body) /
// bandwidth per message, and nothing else; forward passes and offloading likewise. Then behaviour a user would notice:
// clients sharing a server wait for each other, a server that vanishes fails the session, runs
// are reproducible, and calibration hits its published figure.
#include "sim/simulation.h"
#include "core/messages.h"
#include "core/wire.h"
#include "sim/calibration.h"
#include "sim/isolated_run.h"
#include "sim/scenario.h"

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bouquet::sim {
namespace {

// bloom-7b1 in f16 on A100s; one region of 1 Gbit/s links with 1 ms one way to the switch.
std::string scenario_text(const std::string& servers, const std::string& clients, const std::string& extra = "") {
  return fmt::format(R"(version: 1
name: test
seed: 5
duration_s: 1000
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
                     servers, clients, extra);
}

Scenario load(const std::string& text) { return load_scenario_text(text, "test.yaml", {}).base; }

const ModelShape& bloom() { return *find_model("bloom-7b1"); }

// One message from a host to another in the region: two 1 ms hops, then size over 1 Gbit/s.
double transfer_s(const core::Message& message) {
  return 0.002 + static_cast<double>(core::wire_bytes(message)) * 8 / 1e9;
}

core::Activation states(uint32_t batch, uint32_t tokens) {
  return core::make_sized_activation({batch, tokens, 4096}, core::DType::float16);
}

TEST(Simulation, GenerationStepCostsComputePlusMessages) {
  Scenario s = load(scenario_text("  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30]}",
                                  "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
                                  "     work: {kind: generate, batch: 2, prefix_tokens: 5, new_tokens: 3}}"));
  RunResult result = simulate_isolated(s);
  ASSERT_TRUE(result.all_finished()) << result.clients[0].error;
  EXPECT_EQ(result.clients[0].steps, 4);

  CostModel cost(s.cost);
  const DeviceSpec& a100 = *find_device("a100-80gb");
  const DeviceSpec& cpu = *find_device("cpu-32core");
  double expected = cost.client_step(cpu, bloom(), 2 * 5, 0).seconds;  // embed the prompt
  uint32_t position = 0;
  for (uint32_t tokens : {5u, 1u, 1u, 1u}) {
    core::StepRequest request;
    request.hidden_states = states(2, tokens);
    request.start_position = position;
    core::StepResult reply;
    reply.hidden_states = states(2, tokens);
    expected += transfer_s(request) + transfer_s(reply);
    expected += cost.span_step_s(a100, bloom(), WeightFormat::f16, 30,
                                 {.batch = 2, .new_tokens = tokens, .cache_tokens = position});
    expected += cost.client_step(cpu, bloom(), 2, 2).seconds;  // LM head, next embedding
    position += tokens;
  }
  EXPECT_NEAR(result.clients[0].measured_s, expected, 1e-6);
  EXPECT_NEAR(result.metric("steps_per_s"), 4 / expected, 1e-4);
}

// Chunked prefill (core/block_server.h): the 5-token prompt on a server chunking at 2 rows runs as
// three computations of 2, 2 and 1 positions, each charged on its own; the client still sends one
// request and gets one reply.
TEST(Simulation, AChunkedPrefillIsChargedChunkByChunk) {
  Scenario s =
      load(scenario_text("  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30], max_batch: 4, prefill_chunk: 2}",
                         "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
                         "     work: {kind: generate, prefix_tokens: 5, new_tokens: 1}}"));
  RunResult result = simulate_isolated(s);
  ASSERT_TRUE(result.all_finished()) << result.clients[0].error;
  CostModel cost(s.cost);
  const DeviceSpec& a100 = *find_device("a100-80gb");
  const DeviceSpec& cpu = *find_device("cpu-32core");
  double expected = cost.client_step(cpu, bloom(), 5, 0).seconds;
  uint32_t position = 0;
  for (uint32_t tokens : {5u, 1u}) {
    core::StepRequest request;
    request.hidden_states = states(1, tokens);
    request.start_position = position;
    core::StepResult reply;
    reply.hidden_states = states(1, tokens);
    expected += transfer_s(request) + transfer_s(reply);
    for (uint32_t chunk = 0; chunk < tokens; chunk += 2) {
      const uint32_t n = std::min(2u, tokens - chunk);
      expected += cost.span_step_s(a100, bloom(), WeightFormat::f16, 30,
                                   {.batch = 1, .new_tokens = n, .cache_tokens = position + chunk});
    }
    expected += cost.client_step(cpu, bloom(), 1, 1).seconds;
    position += tokens;
  }
  EXPECT_NEAR(result.clients[0].measured_s, expected, 1e-6);
}

TEST(Simulation, ForwardPassGoesThroughEveryHop) {
  Scenario s =
      load(scenario_text("  - {name: s1, gpu: a100-80gb, region: lab, blocks: [0, 10]}\n"
                         "  - {name: s2, gpu: rtx-3090, region: lab, blocks: [10, 30]}",
                         "  - {name: c, device: cpu-8core, region: lab, start_s: 1,\n"
                         "     work: {kind: forward, batch: 4, sequence_tokens: 64, repeat: 2}}"));
  RunResult result = simulate_isolated(s);
  ASSERT_TRUE(result.all_finished()) << result.clients[0].error;
  CostModel cost(s.cost);
  BlockWork work{.batch = 4, .new_tokens = 64};
  core::ForwardRequest request;
  request.model_id = "bloom-7b1";
  request.hidden_states = states(4, 64);
  core::ForwardResult reply;
  reply.hidden_states = states(4, 64);
  const double pass_s = 2 * (transfer_s(request) + transfer_s(reply)) +
                        cost.span_step_s(*find_device("a100-80gb"), bloom(), WeightFormat::f16, 10, work) +
                        cost.span_step_s(*find_device("rtx-3090"), bloom(), WeightFormat::f16, 20, work);
  const double embed_s = cost.client_step(*find_device("cpu-8core"), bloom(), 4 * 64, 0).seconds;
  EXPECT_NEAR(result.clients[0].measured_s, embed_s + 2 * pass_s, 1e-5);
  EXPECT_EQ(result.clients[0].tokens, 2 * 4 * 64);
}

TEST(Simulation, OffloadingMatchesTheDoubleBufferedFormula) {
  Scenario s = load(scenario_text("  []",
                                  "  - {name: c, device: a100-80gb, region: lab,\n"
                                  "     offload: {gpu: a100-80gb, pcie_bps: 128e9},\n"
                                  "     work: {kind: generate, prefix_tokens: 3, new_tokens: 2}}"));
  RunResult result = simulate_isolated(s);
  ASSERT_TRUE(result.all_finished()) << result.clients[0].error;
  CostModel cost(s.cost);
  const DeviceSpec& a100 = *find_device("a100-80gb");
  double expected = 0;
  int64_t position = 0;
  for (int64_t tokens : {3, 1, 1}) {
    expected +=
        cost.offload_step_s(a100, bloom(), WeightFormat::f16, 128e9, {.new_tokens = tokens, .cache_tokens = position});
    expected += cost.client_step(a100, bloom(), 1, 1).seconds;
    position += tokens;
  }
  EXPECT_NEAR(result.clients[0].measured_s, expected, 1e-5);
}

TEST(Simulation, ClientsSharingAServerWaitForEachOther) {
  const std::string server = "  - {name: s, gpu: t4, region: lab, blocks: [0, 30]}";
  const std::string work = "work: {kind: generate, prefix_tokens: 1, new_tokens: 49}";
  RunResult alone = simulate_isolated(load(
      scenario_text(server, fmt::format("  - {{name: c, device: cpu-32core, region: lab, start_s: 1, {}}}", work))));
  RunResult shared = simulate_isolated(load(scenario_text(
      server, fmt::format("  - {{name: c, count: 4, device: cpu-32core, region: lab, start_s: 1, {}}}", work))));
  ASSERT_TRUE(alone.all_finished());
  ASSERT_TRUE(shared.all_finished());
  ASSERT_EQ(shared.clients.size(), 4u);
  // The T4's compute (~0.4 s per step for 30 blocks) dominates: four clients each get a bit more
  // than a quarter of it (their LM heads overlap other clients' steps), never more than alone.
  const double each = shared.metric("steps_per_s");
  EXPECT_LT(each, alone.metric("steps_per_s") / 3);
  EXPECT_GT(each, alone.metric("steps_per_s") / 4.5);
}

TEST(Simulation, AServerThatVanishesFailsTheSessionWithATimeout) {
  Scenario s = load(scenario_text("  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30], lifetime_s: 5}",
                                  "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
                                  "     work: {kind: generate, prefix_tokens: 1, new_tokens: 10000}}"));
  RunResult result = simulate_isolated(s);
  ASSERT_EQ(result.clients.size(), 1u);
  EXPECT_FALSE(result.clients[0].finished);
  EXPECT_THAT(result.clients[0].error, ::testing::HasSubstr("timeout"));
  EXPECT_TRUE(std::isnan(result.metric("steps_per_s")));
}

TEST(Simulation, JoiningServersAreRoutedToOnlyOnceLoaded) {
  // 30 bloom-7b1 blocks in f16 are 12.08 GB: 9.7 s over 10 Gbit/s.
  const std::string server = "  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30], load_bps: 1e10}";
  const std::string work = "work: {kind: generate, prefix_tokens: 1, new_tokens: 3}";
  RunResult early = simulate_isolated(load(
      scenario_text(server, fmt::format("  - {{name: c, device: cpu-32core, region: lab, start_s: 5, {}}}", work))));
  EXPECT_FALSE(early.clients[0].finished);
  EXPECT_THAT(early.clients[0].error, ::testing::HasSubstr("no_route"));
  RunResult late = simulate_isolated(load(
      scenario_text(server, fmt::format("  - {{name: c, device: cpu-32core, region: lab, start_s: 10, {}}}", work))));
  EXPECT_TRUE(late.clients[0].finished) << late.clients[0].error;
}

TEST(Simulation, ServersPlacedByTheCoreCoverTheModel) {
  // Three servers of 10 blocks each join at random moments within 30 s; each takes the weakest
  // span it sees, so together they hold all 30 blocks and a client gets through.
  const std::string client =
      "  - {name: c, device: cpu-32core, region: lab, start_s: 40,\n"
      "     work: {kind: generate, prefix_tokens: 1, new_tokens: 4}}";
  const std::string policies = "policies: {join_delay_s: 30}\n";
  RunResult result = simulate_isolated(load(scenario_text(
      "  - {name: s, count: 3, gpu: rtx-3090, region: lab, blocks: auto, num_blocks: 10}", client, policies)));
  EXPECT_TRUE(result.clients[0].finished) << result.clients[0].error;
  // Two servers of 10 cannot cover 30 blocks: the client finds no route.
  RunResult short_swarm = simulate_isolated(load(scenario_text(
      "  - {name: s, count: 2, gpu: rtx-3090, region: lab, blocks: auto, num_blocks: 10}", client, policies)));
  EXPECT_THAT(short_swarm.clients[0].error, ::testing::HasSubstr("no_route"));
}

TEST(Simulation, InjectedFailuresAreRecoveredByTheCoreSession) {
  // A 4-stage pipeline where each activation resets its stage with probability 2%: the core's
  // replay recovery re-sends each reset stage its history and the generation completes; with
  // recovery "none" the first failure ends it.
  const std::string servers =
      "  - {name: s0, gpu: gtx-1080-ti, region: lab, blocks: [0, 8]}\n"
      "  - {name: s1, gpu: gtx-1080-ti, region: lab, blocks: [8, 15]}\n"
      "  - {name: s2, gpu: gtx-1080-ti, region: lab, blocks: [15, 23]}\n"
      "  - {name: s3, gpu: gtx-1080-ti, region: lab, blocks: [23, 30]}";
  const std::string client =
      "  - {name: c, device: cpu-8core, region: lab, start_s: 1,\n"
      "     work: {kind: generate, prefix_tokens: 1, new_tokens: 127}}";
  auto run = [&](const std::string& recovery) {
    std::string text = scenario_text(servers, client,
                                     fmt::format("churn: {{activation_failure_probability: 0.02}}\n"
                                                 "policies: {{recovery: {}, ban_base_s: 0}}\n",
                                                 recovery));
    text.replace(text.find("weights: f16"), 12, "weights: f32");
    text.replace(text.find("{f16: 0.5}"), 10, "{f32: 0.5}");
    return simulate_isolated(load(text));
  };
  std::cout << "seed 5; reproduce: ctest -R Simulation.InjectedFailures\n";
  RunResult replay = run("replay");
  ASSERT_TRUE(replay.clients[0].finished) << replay.clients[0].error;
  EXPECT_EQ(replay.clients[0].steps, 128);
  EXPECT_GT(replay.clients[0].recoveries, 0);
  EXPECT_GT(replay.clients[0].positions_replayed, 0);
  RunResult none = run("none");
  EXPECT_FALSE(none.clients[0].finished);
  EXPECT_THAT(none.clients[0].error, ::testing::HasSubstr("peer_unreachable"));
}

TEST(Simulation, AServerThatLiesAboutItsSpeedLosesItsClientsOnceMeasured) {
  // Two A100s split the model; a T4 holds all of it and announces 1000 times its real
  // speed. Believed, its one hop looks free and every session goes through it (4x slower per
  // block); measured over the first session's steps, it loses its claim and later sessions take
  // the A100s: the client ends up close to what it gets when the liar is not there at all.
  const std::string honest =
      "  - {name: a, gpu: a100-80gb, region: lab, blocks: [0, 15]}\n"
      "  - {name: b, gpu: a100-80gb, region: lab, blocks: [15, 30]}";
  const std::string liar = "\n  - {name: liar, gpu: t4, region: lab, blocks: [0, 30], announce_speed_x: 1000}";
  const std::string client =
      "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
      "     work: {kind: generate, prefix_tokens: 1, new_tokens: 31, repeat: 20}}";
  const std::string policies = "policies: {routing: min_latency}\n";
  RunResult without = simulate_isolated(load(scenario_text(honest, client, policies)));
  RunResult with = simulate_isolated(load(scenario_text(honest + liar, client, policies)));
  ASSERT_TRUE(without.all_finished()) << without.clients[0].error;
  ASSERT_TRUE(with.all_finished()) << with.clients[0].error;
  std::cout << "tokens/s without the liar " << without.metric("tokens_per_s") << ", with it "
            << with.metric("tokens_per_s") << "\n";
  EXPECT_GT(with.metric("tokens_per_s"), 0.8 * without.metric("tokens_per_s"));
}

TEST(Simulation, SameSeedSameRun) {
  const std::string text = scenario_text("  - {name: s, count: 2, gpu: rtx-3090, region: lab, blocks: [0, 30]}",
                                         "  - {name: c, count: 3, device: cpu-8core, region: lab, start_s: 1,\n"
                                         "     work: {kind: generate, prefix_tokens: 8, new_tokens: 20}}");
  std::cout << "seed 5; reproduce: ctest -R Simulation.SameSeedSameRun\n";
  EXPECT_EQ(to_json(simulate_isolated(load(text))), to_json(simulate_isolated(load(text))));
}

TEST(Calibration, ReproducesThePublishedFigureOfItsRow) {
  std::string text =
      scenario_text("  - {name: s, gpu: a100-80gb, region: lab, blocks: [0, 30]}",
                    "  - {name: c, device: cpu-32core, region: lab, start_s: 1,\n"
                    "     work: {kind: generate, prefix_tokens: 1, new_tokens: 31}}",
                    "rows:\n  - {name: fit, metric: steps_per_s, published: 8}\n"
                    "  - {name: other, set: {regions.0.latency_s: 0.01}, metric: steps_per_s, published: 1}\n"
                    "calibration:\n  - {format: f16, row: fit}\n");
  ScenarioFile file = load_scenario_text(text, "test.yaml", {});
  std::vector<Calibrated> solved = calibrate(file);
  ASSERT_EQ(solved.size(), 1u);
  EXPECT_GT(solved[0].efficiency, 0);
  EXPECT_LE(solved[0].efficiency, 1);
  EXPECT_NEAR(simulate_isolated(file.row_scenarios[0]).metric("steps_per_s"), 8, 1e-6);
  EXPECT_DOUBLE_EQ(file.row_scenarios[1].cost.of(WeightFormat::f16).compute_eff, solved[0].efficiency);

  // 1000 steps/s would need a GPU faster than its datasheet.
  text.replace(text.find("published: 8"), 12, "published: 1000");
  ScenarioFile impossible = load_scenario_text(text, "test.yaml", {});
  EXPECT_THROW(calibrate(impossible), SimulationError);
}

}  // namespace
}  // namespace bouquet::sim

// A device file (bouquet profile-device's JSON) as the simulator's device: its measured block
// steps are what the cost model charges, interpolated between points, and what a simulated
// generation through a server on it takes; a file that is not one is refused naming file and key.
#include "sim/cost_model.h"
#include "sim/devices.h"
#include "sim/isolated_run.h"
#include "sim/scenario.h"
#include "sim/simulation.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <filesystem>
#include <fstream>

namespace bouquet::sim {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A profile of a bloom-7b1-shaped block, so scenarios on bloom-7b1 use its figures unscaled.
json profile() {
  const ModelShape& bloom = *find_model("bloom-7b1");
  json decode = json::array();
  for (int64_t batch : {1, 4}) {
    for (int64_t cache : {0, 100}) {
      decode.push_back({{"batch", batch}, {"cache_tokens", cache}, {"step_s", 0.010 + 0.001 * batch + 1e-5 * cache}});
    }
  }
  json prefill = json::array(
      {{{"batch", 1}, {"new_tokens", 16}, {"step_s", 0.020}}, {{"batch", 1}, {"new_tokens", 64}, {"step_s", 0.050}}});
  json half = {{"decode", decode}, {"prefill", prefill}};
  for (auto& d : half["decode"]) d["step_s"] = d["step_s"].get<double>() / 2;
  return {{"version", 1},
          {"machine", {{"cpu_model", "test"}, {"cores", 2}, {"threads", 1}, {"memory_bytes", 64e9}, {"date", "now"}}},
          {"model",
           {{"family", "bloom"},
            {"hidden", bloom.hidden},
            {"intermediate", bloom.intermediate},
            {"heads", bloom.heads},
            {"kv_heads", bloom.kv_heads},
            {"vocab", bloom.vocab},
            {"blocks", bloom.num_blocks}}},
          {"read_bandwidth_bytes_per_s", 1e10},
          {"request_overhead_s", 0.003},
          {"block_overhead_s", 0.0002},
          {"formats", {{"f32", {{"decode", decode}, {"prefill", prefill}}}, {"bf16", half}}}};
}

std::string write(const std::string& name, const std::string& text) {
  const fs::path path = fs::path(::testing::TempDir()) / fmt::format("device-file-{}-{}", ::getpid(), name);
  std::ofstream(path) << text;
  return path.string();
}

const DeviceSpec& registered(const json& p, const std::string& name) {
  return *find_device(register_device_file(write(name, p.dump())));
}

TEST(DeviceFile, BlockStepIsTheMeasuredFigureAndInterpolatesBetweenPoints) {
  const DeviceSpec& device = registered(profile(), "steps.json");
  EXPECT_FALSE(device.is_gpu);
  EXPECT_DOUBLE_EQ(device.memory_bandwidth_bytes_per_s, 1e10);
  const CostModel cost(CostModelConfig{});
  const ModelShape& bloom = *find_model("bloom-7b1");
  const auto step = [&](WeightFormat f, BlockWork w) { return cost.block_step(device, bloom, f, w).seconds; };
  // Measured points, plus the per-block overhead.
  EXPECT_DOUBLE_EQ(step(WeightFormat::f32, {.batch = 4, .new_tokens = 1, .cache_tokens = 100}), 0.015 + 0.0002);
  EXPECT_DOUBLE_EQ(step(WeightFormat::f32, {.batch = 1, .new_tokens = 64}), 0.050 + 0.0002);
  EXPECT_DOUBLE_EQ(step(WeightFormat::f16, {.batch = 1, .new_tokens = 1}), 0.011 / 2 + 0.0002);  // bf16 figures
  // Between points: bilinear for decode, linear in positions for prefill.
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 2, .new_tokens = 1, .cache_tokens = 50}), 0.0125 + 0.0002, 1e-12);
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 40}), 0.035 + 0.0002, 1e-12);
  // Beyond the largest point the last segment extends; a cache adds its decode attention cost.
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 1, .cache_tokens = 200}), 0.013 + 0.0002, 1e-12);
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 16, .cache_tokens = 100}), 0.020 + 16 * 0.001 + 0.0002,
              1e-12);
  // A file without backward points: a backward is charged twice the forward.
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 64, .backward = true}), 2 * 0.050 + 0.0002, 1e-12);
  // A span: its blocks plus the measured per-request overhead instead of the scenario's.
  CostModelConfig config;
  config.of(WeightFormat::f32).request_overhead_s = 1.0;
  EXPECT_NEAR(CostModel(config).span_step_s(device, bloom, WeightFormat::f32, 3, {}), 3 * (0.011 + 0.0002) + 0.003,
              1e-12);
  // Another model's block: scaled by the rooflines' ratio, so a bigger block costs more.
  EXPECT_GT(step(WeightFormat::f32, {}), 0);
  EXPECT_GT(cost.block_step(device, *find_model("bloom-176b"), WeightFormat::f32, {}).seconds,
            5 * step(WeightFormat::f32, {}));
}

TEST(DeviceFile, ABackwardIsItsMeasuredFigureWhereTheFileHasOne) {
  json p = profile();
  // Measured: a backward costs 3.5x the forward at 16 positions, 3x at 64.
  p["formats"]["f32"]["backward"] = json::array(
      {{{"batch", 1}, {"new_tokens", 16}, {"step_s", 0.070}}, {{"batch", 1}, {"new_tokens", 64}, {"step_s", 0.150}}});
  const DeviceSpec& device = registered(p, "backward.json");
  const CostModel cost(CostModelConfig{});
  const ModelShape& bloom = *find_model("bloom-7b1");
  const auto step = [&](WeightFormat f, BlockWork w) { return cost.block_step(device, bloom, f, w).seconds; };
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 16, .backward = true}), 0.070 + 0.0002, 1e-12);
  // Linear in batch x positions between and beyond the points, as prefill is.
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 2, .new_tokens = 20, .backward = true}), 0.110 + 0.0002, 1e-12);
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 112, .backward = true}), 0.230 + 0.0002, 1e-12);
  // The forward is untouched; bf16, measured without backward points, stays at twice its forward.
  EXPECT_NEAR(step(WeightFormat::f32, {.batch = 1, .new_tokens = 64}), 0.050 + 0.0002, 1e-12);
  EXPECT_NEAR(step(WeightFormat::f16, {.batch = 1, .new_tokens = 64, .backward = true}),
              2 * step(WeightFormat::f16, {.batch = 1, .new_tokens = 64}) - 0.0002, 1e-12);
  p["formats"]["f32"]["backward"][1]["step_s"] = "fast";
  const std::string bad = write("bad-backward.json", p.dump());
  try {
    read_device_file(bad);
    ADD_FAILURE() << "a backward point that is not a number was accepted";
  } catch (const DeviceFileError& e) {
    EXPECT_NE(std::string(e.what()).find("formats.f32.backward.1.step_s"), std::string::npos) << e.what();
  }
}

std::string error_of(const std::string& path) {
  try {
    read_device_file(path);
  } catch (const DeviceFileError& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceFile, BadFilesAreRefusedNamingTheFileAndTheKey) {
  EXPECT_EQ(error_of(write("good.json", profile().dump())), "");
  const std::string missing = fs::path(::testing::TempDir()) / "no-such-device.json";
  EXPECT_EQ(error_of(missing), fmt::format("device file {}: cannot be read", missing));
  const std::string not_json = write("not-json.json", "{ version: 1");
  EXPECT_NE(error_of(not_json).find(fmt::format("device file {}: not JSON", not_json)), std::string::npos);
  json p = profile();
  p["version"] = 2;
  const std::string v2 = write("v2.json", p.dump());
  EXPECT_EQ(error_of(v2), fmt::format("device file {}: version: 2 is not 1 (the version this bouquet reads)", v2));
  p = profile();
  p["formats"]["f32"]["decode"][2].erase("step_s");
  const std::string no_step = write("no-step.json", p.dump());
  EXPECT_EQ(error_of(no_step), fmt::format("device file {}: formats.f32.decode.2.step_s: missing", no_step));
  p = profile();
  p.erase("request_overhead_s");
  EXPECT_NE(error_of(write("no-overhead.json", p.dump())).find(": request_overhead_s: missing"), std::string::npos);
  p = profile();
  p["formats"]["f32"]["decode"][0]["step_s"] = -1;
  EXPECT_NE(error_of(write("negative.json", p.dump())).find("formats.f32.decode.0.step_s: -1 is not"),
            std::string::npos);
  p = profile();
  p["formats"]["f32"]["decode"].erase(1);
  EXPECT_NE(error_of(write("holes.json", p.dump())).find("formats.f32.decode: not a full grid"), std::string::npos);
  p = profile();
  p["formats"]["nf4"] = p["formats"]["f32"];
  EXPECT_NE(error_of(write("nf4.json", p.dump())).find("formats.nf4: not one of"), std::string::npos);
}

std::string scenario(const std::string& server, const std::string& weights = "f16") {
  return fmt::format(R"(version: 1
name: test
seed: 5
duration_s: 1000
network: {{model: CM02, crosstraffic: false, tcp_window_bytes: 0, why: exact arithmetic}}
model: {{name: bloom-7b1, weights: {}, activations: float16, wire_compression: none}}
cost: {{efficiency: {{f16: 0.5, int8: 0.5}}, block_overhead_s: 0.001, request_overhead_s: 0.002, client_efficiency: 1}}
directory: {{round_trip_s: 0.05}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}}
servers:
  - {}
clients:
  - {{name: c, device: cpu-32core, region: lab, start_s: 1, work: {{kind: generate, batch: 1, prefix_tokens: 1, new_tokens: 0}}}}
)",
                     weights, server);
}

TEST(DeviceFile, AScenarioServerOnADeviceFileComputesItsMeasuredSteps) {
  const std::string path = write("scenario-device.json", profile().dump());
  const Scenario s =
      load_scenario_text(scenario(fmt::format("{{name: s, device_file: {}, region: lab, blocks: [0, 30]}}", path)),
                         "test.yaml", {})
          .base;
  const DeviceSpec& device = *find_device(s.servers[0].gpu);
  ASSERT_TRUE(device.measured);
  const double span_s = CostModel(s.cost).span_step_s(device, s.shape(), WeightFormat::f16, 30, {});
  EXPECT_NEAR(span_s, 30 * (0.011 / 2 + 0.0002) + 0.003, 1e-12);
  // The same run with the server on that device and on a datasheet GPU: only the span differs.
  const Scenario gpu =
      load_scenario_text(scenario("{name: s, gpu: a100-80gb, region: lab, blocks: [0, 30]}"), "test.yaml", {}).base;
  const RunResult measured = simulate_isolated(s), datasheet = simulate_isolated(gpu);
  ASSERT_TRUE(measured.all_finished()) << measured.clients[0].error;
  ASSERT_TRUE(datasheet.all_finished()) << datasheet.clients[0].error;
  const double a100_s =
      CostModel(gpu.cost).span_step_s(*find_device("a100-80gb"), gpu.shape(), WeightFormat::f16, 30, {});
  EXPECT_NEAR(measured.clients[0].measured_s - datasheet.clients[0].measured_s, span_s - a100_s, 1e-9);
}

TEST(DeviceFile, AScenarioNamesTheKeyOfABadDeviceFile) {
  const auto error_of_scenario = [](const std::string& text) -> std::string {
    try {
      load_scenario_text(text, "test.yaml", {});
    } catch (const ScenarioError& e) {
      return e.what();
    }
    return "";
  };
  const std::string missing = fs::path(::testing::TempDir()) / "no-such-device.json";
  std::string error =
      error_of_scenario(scenario(fmt::format("{{name: s, device_file: {}, region: lab, blocks: [0, 30]}}", missing)));
  EXPECT_NE(error.find("servers.0.device_file"), std::string::npos) << error;
  EXPECT_NE(error.find(fmt::format("device file {}: cannot be read", missing)), std::string::npos) << error;
  const std::string path = write("scenario-int8.json", profile().dump());
  error = error_of_scenario(
      scenario(fmt::format("{{name: s, device_file: {}, region: lab, blocks: [0, 30]}}", path), "int8"));
  EXPECT_NE(error.find("has no figures for int8 weights"), std::string::npos) << error;
  error = error_of_scenario(
      scenario(fmt::format("{{name: s, gpu: t4, device_file: {}, region: lab, blocks: [0, 30]}}", path)));
  EXPECT_NE(error.find("either gpu or device_file"), std::string::npos) << error;
}

}  // namespace
}  // namespace bouquet::sim

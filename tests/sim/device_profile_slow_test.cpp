// `bouquet profile-device` on a tiny model, read back as the simulator's device: the simulated
// step of that device is the figure it measured (at measured points) or lies between its
// neighbours (between them), and the command refuses settings it cannot measure.
#include "sim/cost_model.h"
#include "sim/devices.h"

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace bouquet::sim {
namespace {

namespace fs = std::filesystem;

std::pair<int, std::string> run(const std::string& arguments) {
  FILE* pipe = popen(fmt::format("{} {} 2>&1", BOUQUET_BINARY, arguments).c_str(), "r");
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof buffer, pipe)) output += buffer;
  return {pclose(pipe), output};
}

fs::path scratch() {
  const fs::path dir = fs::path(::testing::TempDir()) / fmt::format("bouquet-profile-{}", ::getpid());
  fs::create_directories(dir);
  return dir;
}

TEST(ProfileDevice, TheSimulatedStepOfAProfiledDeviceIsItsMeasuredFigure) {
  const fs::path dir = scratch();
  const auto [made, made_output] = run(fmt::format("make-tiny-model --out {} --layers 4", (dir / "tiny").string()));
  ASSERT_EQ(made, 0) << made_output;
  const fs::path out = dir / "device.json";
  const auto [status, output] =
      run(fmt::format("profile-device --model {} --out {} --seconds-per-point 0.01 --batches 1,4 --cache-tokens 0,32 "
                      "--prefill-tokens 8,32 --threads 1",
                      (dir / "tiny").string(), out.string()));
  ASSERT_EQ(status, 0) << output;
  EXPECT_NE(output.find("read bandwidth"), std::string::npos) << output;
  nlohmann::json profile;
  std::ifstream(out) >> profile;
  EXPECT_EQ(profile["version"], 1);
  EXPECT_EQ(profile["machine"]["threads"], 1);
  EXPECT_EQ(profile["model"]["hidden"], 64);

  const DeviceSpec& device = *find_device(register_device_file(out.string()));
  ASSERT_TRUE(device.measured);
  const ModelShape& shape = device.measured->shape;
  const CostModel cost(CostModelConfig{});
  const double block_overhead_s = profile["block_overhead_s"].get<double>();
  for (const auto& [name, format] :
       {std::pair{"f32", WeightFormat::f32}, {"bf16", WeightFormat::f16}, {"int8", WeightFormat::int8}}) {
    const auto& figures = profile["formats"][name];
    ASSERT_EQ(figures["decode"].size(), 4u) << name;
    for (const auto& d : figures["decode"]) {
      const BlockWork work{.batch = d["batch"], .new_tokens = 1, .cache_tokens = d["cache_tokens"]};
      EXPECT_NEAR(cost.block_step(device, shape, format, work).seconds, d["step_s"].get<double>() + block_overhead_s,
                  1e-12)
          << name << " decode " << d.dump();
    }
    for (const auto& p : figures["prefill"]) {
      const BlockWork work{.batch = 1, .new_tokens = p["new_tokens"]};
      EXPECT_NEAR(cost.block_step(device, shape, format, work).seconds, p["step_s"].get<double>() + block_overhead_s,
                  1e-12)
          << name << " prefill " << p.dump();
    }
    // A backward at each prefill length: what the cost model charges for it, and more than the
    // forward of the same positions (the forward is recomputed, then the gradients flow back).
    ASSERT_EQ(figures["backward"].size(), figures["prefill"].size()) << name;
    for (size_t i = 0; i < figures["backward"].size(); ++i) {
      const auto& b = figures["backward"][i];
      EXPECT_EQ(b["new_tokens"], figures["prefill"][i]["new_tokens"]) << name;
      const BlockWork work{.batch = 1, .new_tokens = b["new_tokens"], .backward = true};
      EXPECT_NEAR(cost.block_step(device, shape, format, work).seconds, b["step_s"].get<double>() + block_overhead_s,
                  1e-12)
          << name << " backward " << b.dump();
      EXPECT_GT(b["step_s"].get<double>(), figures["prefill"][i]["step_s"].get<double>()) << name << b.dump();
    }
    // Batch 2 at cache 16 lies within the four measured corners around it.
    double lo = 1e9, hi = 0;
    for (const auto& d : figures["decode"]) {
      lo = std::min(lo, d["step_s"].get<double>());
      hi = std::max(hi, d["step_s"].get<double>());
    }
    const double between =
        cost.block_step(device, shape, format, {.batch = 2, .new_tokens = 1, .cache_tokens = 16}).seconds;
    EXPECT_GE(between, lo + block_overhead_s - 1e-12) << name;
    EXPECT_LE(between, hi + block_overhead_s + 1e-12) << name;
  }
  EXPECT_NEAR(
      cost.span_step_s(device, shape, WeightFormat::f32, 4, {}),
      4 * cost.block_step(device, shape, WeightFormat::f32, {}).seconds + profile["request_overhead_s"].get<double>(),
      1e-12);
}

TEST(ProfileDevice, RefusesWhatItCannotMeasure) {
  const fs::path dir = scratch();
  ASSERT_EQ(run(fmt::format("make-tiny-model --out {} --layers 2", (dir / "small").string())).first, 0);
  const std::string model = (dir / "small").string();
  const std::string out = (dir / "bad.json").string();
  auto [status, output] = run(fmt::format("profile-device --model {} --out {} --formats f32,nf4", model, out));
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--formats: 'nf4' is not one of f32, bf16, int8"), std::string::npos) << output;
  std::tie(status, output) = run(fmt::format("profile-device --model {} --out {} --cache-tokens 100000", model, out));
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--cache-tokens"), std::string::npos) << output;
  std::tie(status, output) = run(fmt::format("profile-device --model {} --out {}", (dir / "none").string(), out));
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("none"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace bouquet::sim

// The cost model against hand-computed cases: parameter counts against the published totals,
// roofline regimes on known hardware, and the offloading and loading formulas.
#include "sim/cost_model.h"

#include <gtest/gtest.h>

namespace bouquet::sim {
namespace {

const ModelShape& model(const char* name) {
  const ModelShape* shape = find_model(name);
  EXPECT_NE(shape, nullptr) << name;
  return *shape;
}

const DeviceSpec& device(const char* name) {
  const DeviceSpec* spec = find_device(name);
  EXPECT_NE(spec, nullptr) << name;
  return *spec;
}

// The published totals include the final norm (and BLOOM's embedding norm), which live on the
// client and are too small to matter to any cost; add them back to compare exactly.
TEST(ModelShapes, ParameterCountsMatchPublishedTotals) {
  EXPECT_EQ(model("bloom-176b").params_per_block(), 12 * 14336LL * 14336 + 13 * 14336);
  EXPECT_EQ(model("bloom-176b").total_params() + 4 * 14336, 176'247'271'424LL);
  EXPECT_EQ(model("bloom-7b1").total_params() + 4 * 4096, 7'069'016'064LL);
  EXPECT_EQ(model("llama-2-70b").total_params() + 8192, 68'976'648'192LL);
  EXPECT_EQ(model("llama-2-7b").total_params() + 4096, 6'738'415'616LL);
  EXPECT_EQ(model("mixtral-8x7b").total_params() + 4096, 46'702'792'704LL);
  // Falcon-180B's card gives "180B"; its shapes give 178.6B.
  EXPECT_NEAR(static_cast<double>(model("falcon-180b").total_params()), 180e9, 0.01 * 180e9);
}

TEST(ModelShapes, LookupIsCaseInsensitiveAndRejectsUnknown) {
  EXPECT_NE(find_model("BLOOM-176B"), nullptr);
  EXPECT_EQ(find_model("gpt-5"), nullptr);
  EXPECT_NE(find_device("A100-80GB"), nullptr);
  EXPECT_EQ(find_device("h900"), nullptr);
  EXPECT_EQ(model_names().size(), 6u);
}

TEST(ModelShapes, MixtureOfExpertsTouchesOnlyRoutedExperts) {
  const ModelShape& mixtral = model("mixtral-8x7b");
  const int64_t expert = 3 * 4096LL * 14336;
  EXPECT_EQ(mixtral.expert_params(), expert);
  EXPECT_EQ(mixtral.active_params_per_block(1), mixtral.shared_params() + 2 * expert);
  EXPECT_EQ(mixtral.active_params_per_block(4), mixtral.params_per_block());
}

CostModelConfig ideal() { return CostModelConfig{}; }  // efficiencies 1, no overheads

TEST(CostModel, OneTokenStepIsMemoryBoundOnWeights) {
  CostModel cost(ideal());
  // BLOOM-176B block in int8: 2.466 GB read once over 2039 GB/s = 1.2096 ms; the cache, the
  // activations (0.57 MB) and the 4.9 GFLOP at 624 TOPS (7.9 us) hardly show.
  StepCost step = cost.block_step(device("a100-80gb"), model("bloom-176b"), WeightFormat::int8, {});
  EXPECT_NEAR(step.flops, 2.0 * 2466437120.0 + 4.0 * 14336, 1.0);
  EXPECT_NEAR(step.seconds, 2466437120.0 / 2039e9, 0.01 * 2466437120.0 / 2039e9);
}

TEST(CostModel, LargeForwardIsComputeBound) {
  CostModel cost(ideal());
  // 64 sequences of 128 tokens: 8192 tokens x 2 x 2.466e9 = 40.4 TFLOP, plus attention over 64 x
  // 128 x 64.5 pairs x 4 x 14336 = 0.30 TFLOP, at 624 TOPS = 65.3 ms.
  BlockWork work{.batch = 64, .new_tokens = 128};
  StepCost step = cost.block_step(device("a100-80gb"), model("bloom-176b"), WeightFormat::int8, work);
  const double expected_flops = 2.0 * 2466437120.0 * 8192 + 4.0 * 14336 * 64 * 128 * 64.5;
  EXPECT_NEAR(step.flops, expected_flops, 1e-9 * expected_flops);
  EXPECT_NEAR(step.seconds, expected_flops / 624e12, 1e-9);
}

TEST(CostModel, EfficiencyDividesTheRooflineAndOverheadsAdd) {
  CostModelConfig config = ideal();
  const DeviceSpec& t4 = device("t4");
  const ModelShape& llama = model("llama-2-70b");
  const double base = CostModel(config).block_step(t4, llama, WeightFormat::nf4, {}).seconds;
  config.of(WeightFormat::nf4) = {
      .compute_eff = 0.25, .memory_eff = 0.25, .block_overhead_s = 0.001, .request_overhead_s = 0.01};
  CostModel slow(config);
  EXPECT_NEAR(slow.block_step(t4, llama, WeightFormat::nf4, {}).seconds, 4 * base + 0.001, 1e-12);
  EXPECT_NEAR(slow.span_step_s(t4, llama, WeightFormat::nf4, 10, {}), 10 * (4 * base + 0.001) + 0.01, 1e-12);
  // Another format's figures do not leak in.
  EXPECT_NEAR(slow.block_step(t4, llama, WeightFormat::f16, {}).seconds,
              CostModel(ideal()).block_step(t4, llama, WeightFormat::f16, {}).seconds, 1e-12);
}

// Decode streams the weights (memory_eff decides it), a long prefill multiplies them (compute_eff
// decides it), and the fixed overhead is the same seconds on a fast and a slow GPU.
TEST(CostModel, ComputeAndMemorySharesGovernTheirOwnRegimeAndOverheadStaysFixed) {
  const ModelShape& bloom = model("bloom-176b");
  const DeviceSpec& a100 = device("a100-80gb");
  const DeviceSpec& rtx3060 = device("rtx-3060");
  CostModelConfig config = ideal();
  config.of(WeightFormat::int8) = {.compute_eff = 0.1, .memory_eff = 0.8, .block_overhead_s = 0.005};
  CostModel cost(config);
  const BlockWork decode{};
  const BlockWork prefill{.batch = 64, .new_tokens = 128};
  const double ideal_decode = CostModel(ideal()).block_step(a100, bloom, WeightFormat::int8, decode).seconds;
  const double ideal_prefill = CostModel(ideal()).block_step(a100, bloom, WeightFormat::int8, prefill).seconds;
  EXPECT_NEAR(cost.block_step(a100, bloom, WeightFormat::int8, decode).seconds, ideal_decode / 0.8 + 0.005, 1e-9);
  EXPECT_NEAR(cost.block_step(a100, bloom, WeightFormat::int8, prefill).seconds, ideal_prefill / 0.1 + 0.005, 1e-9);
  // The RTX 3060 streams 5.7x slower; only the bandwidth part of its decode step grows.
  const double slow_decode = cost.block_step(rtx3060, bloom, WeightFormat::int8, decode).seconds;
  EXPECT_NEAR(slow_decode - 0.005, (ideal_decode / 0.8) * 2039.0 / 360.0, 0.01 * slow_decode);
}

TEST(CostModel, WeightFormatsReadTheirBytes) {
  CostModel cost(ideal());
  const ModelShape& llama = model("llama-2-70b");
  const double f16 = cost.block_weight_bytes(llama, WeightFormat::f16);
  EXPECT_DOUBLE_EQ(f16, 2.0 * 855654400.0);
  // NF4 as the engine stores it (gpu/nf4.h): 4 + 8/64 + 32/(64*256) bits, double-quantized.
  EXPECT_DOUBLE_EQ(cost.block_weight_bytes(llama, WeightFormat::nf4), f16 * (4.0 + 0.125 + 32.0 / 16384) / 16.0);
  EXPECT_DOUBLE_EQ(cost.block_weight_bytes(llama, WeightFormat::f32), 2.0 * f16);
}

TEST(CostModel, LongCachesCostTheirBytes) {
  CostModel cost(ideal());
  // Llama-2-70B keeps 8 KV heads of 128: 2 x 1024 values x 2 bytes = 4 KiB per position per block.
  EXPECT_DOUBLE_EQ(cost.cache_bytes_per_token(model("llama-2-70b")), 4096.0);
  const DeviceSpec& a100 = device("a100-80gb");
  const ModelShape& bloom = model("bloom-176b");
  StepCost early = cost.block_step(a100, bloom, WeightFormat::int8, {.cache_tokens = 0});
  StepCost late = cost.block_step(a100, bloom, WeightFormat::int8, {.cache_tokens = 2047});
  EXPECT_NEAR(late.bytes - early.bytes, 2047.0 * 2 * 14336 * 2, 1.0);
  EXPECT_GT(late.seconds, early.seconds);
}

TEST(CostModel, BackwardDoublesTheWork) {
  CostModel cost(ideal());
  BlockWork forward{.batch = 8, .new_tokens = 128};
  BlockWork backward = forward;
  backward.backward = true;
  const DeviceSpec& gpu = device("rtx-3090");
  const ModelShape& llama = model("llama-2-7b");
  EXPECT_DOUBLE_EQ(cost.block_step(gpu, llama, WeightFormat::f16, backward).seconds,
                   2.0 * cost.block_step(gpu, llama, WeightFormat::f16, forward).seconds);
}

TEST(CostModel, OffloadingStreamsEveryBlockOverPcie) {
  CostModel cost(ideal());
  // 70 BLOOM blocks in int8 = 172.65 GB over 256 Gbit/s = 5.395 s; the GPU's 1.2 ms per block
  // hides behind the 77 ms transfers except for the last block.
  const ModelShape& bloom = model("bloom-176b");
  const double transfer_s = 2466437120.0 * 8 / 256e9;
  const double compute_s = cost.block_step(device("a100-80gb"), bloom, WeightFormat::int8, {}).seconds;
  EXPECT_NEAR(cost.offload_step_s(device("a100-80gb"), bloom, WeightFormat::int8, 256e9, {}),
              70 * transfer_s + compute_s, 1e-9);
  EXPECT_NEAR(cost.offload_step_s(device("a100-80gb"), bloom, WeightFormat::int8, 128e9, {}),
              140 * transfer_s + compute_s, 1e-9);
}

TEST(CostModel, LoadingAndClientHead) {
  CostModelConfig config = ideal();
  config.client_efficiency = 0.5;
  CostModel cost(config);
  const ModelShape& bloom = model("bloom-176b");
  // 10 blocks in int8 over 1 Gbit/s: 24.66 GB x 8 / 1e9 = 197.3 s.
  EXPECT_NEAR(cost.load_s(bloom, WeightFormat::int8, 10, 1e9), 10 * 2466437120.0 * 8 / 1e9, 1e-6);
  // A 250880 x 14336 bf16 head (7.19 GB) over 204.8 GB/s at half efficiency: 70.2 ms per token.
  StepCost head = cost.client_step(device("cpu-32core"), bloom, 1, 1);
  const double head_bytes = 250880.0 * 14336 * 2;
  EXPECT_NEAR(head.seconds, 2 * head_bytes / 204.8e9, 0.001 * 2 * head_bytes / 204.8e9);
  // Forward passes without logits do not read the head.
  EXPECT_LT(cost.client_step(device("cpu-32core"), bloom, 128, 0).seconds, 1e-3);
}

TEST(CostModel, WeightFormatNamesRoundTrip) {
  for (auto format : {WeightFormat::f32, WeightFormat::f16, WeightFormat::int8, WeightFormat::nf4}) {
    EXPECT_EQ(parse_weight_format(format_name(format)), format);
  }
  EXPECT_FALSE(parse_weight_format("int4").has_value());
}

}  // namespace
}  // namespace bouquet::sim

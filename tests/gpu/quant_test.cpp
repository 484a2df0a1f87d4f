// int8 weight-only quantization (ComputeOptions::quant): what a user of --quant int8 gets.
// Stated tolerances, checked here:
// - every output is within 0.5 * scale[o] * sum_i |x_i| of the f32 product (each weight moves by
//   at most half a quantization step, scale[o] = max_i |w[o, i]| / 127), plus f32 rounding;
// - on normally distributed weights the outputs' relative RMS error is under 2% (about 0.9% is
//   expected: a uniform rounding error of scale / sqrt(12) against weights of unit spread).
#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/kernels/matvec.h"
#include "gpu/linear.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

namespace bouquet::gpu {
namespace {

// $BOUQUET_SEED when set, else `fallback`; printed with the command that reproduces the run.
uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("BOUQUET_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
  }
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fmt::print("seed {} (reproduce: BOUQUET_SEED={} gpu_tests --gtest_filter='{}.{}')\n", seed, seed,
             info->test_suite_name(), info->name());
  return seed;
}

at::Tensor random_tensor(core::Rng& rng, std::vector<int64_t> shape, double scale = 1.0) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kDouble));
  double* data = t.data_ptr<double>();
  for (int64_t i = 0; i < t.numel(); ++i) data[i] = scale * rng.normal();
  return t.to(at::kFloat);
}

std::vector<LinearKernels> every_kernel_choice() {
  std::vector<LinearKernels> choices = {LinearKernels::libtorch, LinearKernels::portable};
  if (kernels::isa_supported(kernels::Isa::avx2)) choices.push_back(LinearKernels::avx2);
  if (kernels::isa_supported(kernels::Isa::avx512)) choices.push_back(LinearKernels::avx512);
  return choices;
}

TEST(Int8Linear, EveryOutputWithinHalfAStepPerWeightOfF32) {
  core::Rng rng(test_seed(51));
  at::NoGradGuard no_grad;
  for (LinearKernels choice : every_kernel_choice()) {
    for (int trial = 0; trial < 10; ++trial) {
      const int64_t in = 1 + static_cast<int64_t>(rng.below(300));
      const int64_t out = 1 + static_cast<int64_t>(rng.below(70));
      const int64_t tokens = trial % 3 == 0 ? 12 : 1 + static_cast<int64_t>(rng.below(3));
      const at::Tensor w = random_tensor(rng, {out, in}, 0.05);
      const at::Tensor bias = trial % 2 == 0 ? random_tensor(rng, {out}) : at::Tensor();
      const at::Tensor x = random_tensor(rng, {1, tokens, in});
      ComputeOptions options;
      options.kernels = choice;
      options.quant = WeightQuant::int8;
      const at::Tensor y = Linear(w, options, bias)(x);
      const at::Tensor exact =
          at::linear(x.to(at::kDouble), w.to(at::kDouble), bias.defined() ? bias.to(at::kDouble) : bias);
      const at::Tensor scales = w.abs().amax(1).to(at::kDouble) / 127.0;
      const at::Tensor abs_x = x.abs().sum(-1, true).to(at::kDouble);
      const double u = std::ldexp(1.0, -24);
      const at::Tensor f32_rounding =
          (in + 2) * u * at::linear(x.abs().to(at::kDouble), w.abs().to(at::kDouble)) * 1.01;
      const at::Tensor bound = 0.5 * scales * abs_x + f32_rounding + 1e-12;
      const at::Tensor excess = ((y.to(at::kDouble) - exact).abs() / bound).max();
      EXPECT_LE(excess.item<double>(), 1.0)
          << linear_kernels_name(choice) << " in " << in << " out " << out << " tokens " << tokens;
    }
  }
}

TEST(Int8Linear, RelativeErrorUnderTwoPercentOnNormalWeights) {
  core::Rng rng(test_seed(52));
  at::NoGradGuard no_grad;
  const int64_t in = 4096, out = 256;  // a 7B block's row length
  const at::Tensor w = random_tensor(rng, {out, in}, 0.02);
  const at::Tensor x = random_tensor(rng, {1, 1, in});
  ComputeOptions quantized;
  quantized.quant = WeightQuant::int8;
  const at::Tensor y = Linear(w, quantized)(x);
  const at::Tensor reference = Linear(w, ComputeOptions{})(x);
  const double relative_rms = ((y - reference).pow(2).mean() / reference.pow(2).mean()).sqrt().item<double>();
  fmt::print("int8 relative RMS error: {:.4f}\n", relative_rms);
  EXPECT_LT(relative_rms, 0.02);
  EXPECT_GT(relative_rms, 0.0) << "the weights were not quantized";
}

TEST(Int8Linear, HoldsAQuarterOfTheBytesAndZeroRowsStayZero) {
  at::NoGradGuard no_grad;
  at::Tensor w = at::ones({6, 40});
  w[2].zero_();  // a row of zeros must not divide by zero
  ComputeOptions quantized;
  quantized.quant = WeightQuant::int8;
  const Linear linear(w, quantized);
  EXPECT_EQ(linear.weight_bytes(), 6u * 40u + 6u * 4u) << "int8 weights and one f32 scale per row";
  EXPECT_EQ(Linear(w, ComputeOptions{}).weight_bytes(), 6u * 40u * 4u);
  const at::Tensor y = linear(at::ones({1, 40}));
  EXPECT_TRUE(at::isfinite(y).all().item<bool>());
  EXPECT_EQ(y[0][2].item<float>(), 0.0f);
  EXPECT_NEAR(y[0][0].item<float>(), 40.0f, 1e-4) << "ones are 127 * (1 / 127) in int8";
}

TEST(Int8Option, UnknownQuantizationIsOneClearError) {
  try {
    resolve_compute("f32", "cpu", "int4");
    FAIL() << "int4 accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("int4"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("none, int8, nf4 or nf4-nodq"));
  }
  EXPECT_EQ(describe(resolve_compute("f32", "cpu", "int8")), "cpu f32 int8");
  EXPECT_EQ(describe(resolve_compute("f32", "cpu", "none")), "cpu f32");
}

// The command line: generate --local --quant int8 runs a tiny model and says so; a bad value is
// one line naming it.
TEST(Int8Option, GenerateLocalTakesQuant) {
  const auto dir = testing::fresh_dir("quant_generate");
  write_tiny_checkpoint(testing::small_tiny(dir));
  int status = -1;
  const std::string base = fmt::format(
      "{} generate --local --device cpu --model {} "
      "--prompt-ids 1,45,300,12 --max-new-tokens 6 --json",
      BOUQUET_BINARY, dir.string());
  const std::string out = testing::run_command(base + " --quant int8", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("\"ids\""));
  const std::string bad = testing::run_command(base + " --quant int3", &status);
  EXPECT_NE(status, 0);
  EXPECT_THAT(bad, ::testing::HasSubstr("unknown weight quantization 'int3'"));
}

}  // namespace
}  // namespace bouquet::gpu

// NF4 weights (--quant nf4 | nf4-nodq) and the small-batch kernels at up to kMatvecRowsMax rows.
// Stated tolerances, checked here:
// - the kernels (every instruction set this CPU has, rows 1 .. 16) equal a dequantize-then-matmul
//   reference within f32 rounding: (in + 2) * 2^-24 * sum_i |x_i| |w_i| per output;
// - every NF4 output is within sum_i |x_i| * (0.152 * absmax_b(i) + |absmax_b(i) - stored_b(i)|)
//   of the f32 product: a normalized weight moves to the nearest of the 16 levels, at most half the
//   widest gap (between -1 and -0.696: 0.152), and double quantization moves the absmax itself;
// - on normally distributed weights of a 7B row length the relative RMS error of the outputs is
//   under 12% (NF4's levels give about 9-10% on normal data).
#include "gpu/nf4.h"
#include "core/nf4_layout.h"
#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/kernels/matvec.h"
#include "gpu/linear.h"

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

// f32 rounding of a sum of `in` products, with a little room for the reference's own.
at::Tensor rounding_bound(const at::Tensor& x, const at::Tensor& w) {
  const int64_t in = w.size(1);
  return (in + 2) * std::ldexp(1.0, -24) * at::linear(x.abs().to(at::kDouble), w.abs().to(at::kDouble)) * 1.01 + 1e-12;
}

TEST(Nf4Kernels, EqualDequantizeThenMatmulForEveryIsaAndRowsUpTo16) {
  core::Rng rng(test_seed(61));
  at::NoGradGuard no_grad;
  for (bool double_quant : {false, true}) {
    for (kernels::Isa isa : kernels::supported_isas()) {
      for (int64_t rows = 1; rows <= kernels::kMatvecRowsMax; ++rows) {
        // Row lengths with and without a partial last block; enough outputs for several weight
        // rows per pass and a remainder.
        const int64_t in =
            rows % 3 == 0 ? 64 * (1 + static_cast<int64_t>(rng.below(6))) : 1 + static_cast<int64_t>(rng.below(400));
        const int64_t out = 1 + static_cast<int64_t>(rng.below(40));
        const at::Tensor w = random_tensor(rng, {out, in}, 0.05);
        const at::Tensor x = random_tensor(rng, {rows, in});
        const Nf4Weight q = quantize_nf4(w, double_quant);
        const at::Tensor dense = dequantize_nf4(q, at::kFloat);
        at::Tensor y = at::empty({rows, out});
        kernels::MatvecProblem problem;
        problem.x = x.data_ptr<float>();
        problem.rows = rows;
        problem.in = in;
        problem.weight = q.indices.data_ptr();
        problem.weight_type = kernels::WeightType::nf4;
        problem.nf4_absmax = q.kernel_absmax();
        problem.out = out;
        problem.y = y.data_ptr<float>();
        kernels::matvec(isa, problem, 0, out);
        const at::Tensor reference = at::linear(x.to(at::kDouble), dense.to(at::kDouble));
        const double excess = ((y.to(at::kDouble) - reference).abs() / rounding_bound(x, dense)).max().item<double>();
        EXPECT_LE(excess, 1.0) << kernels::isa_name(isa) << " rows " << rows << " in " << in << " out " << out
                               << (double_quant ? " double-quantized" : "");
      }
    }
  }
}

// Raising kMatvecRowsMax to 16 must not change what f32, bf16 and int8 weights give: 9 .. 16 rows
// take the kernels now (further passes over each weight row on AVX2 and portable code), and so do
// f32 and int8 prefills past 16 rows (in passes of 16).
TEST(MatvecRows, EveryWeightTypeMatchesLibtorchAtAnyRowCount) {
  core::Rng rng(test_seed(62));
  at::NoGradGuard no_grad;
  for (int64_t rows : {1, 5, 8, 9, 12, 15, 16, 20, 37}) {
    const int64_t in = 70 + static_cast<int64_t>(rng.below(300));
    const int64_t out = 1 + static_cast<int64_t>(rng.below(40));
    const at::Tensor w = random_tensor(rng, {out, in}, 0.05);
    const at::Tensor x = random_tensor(rng, {1, rows, in});
    for (WeightQuant quant : {WeightQuant::none, WeightQuant::int8}) {
      for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
        ComputeOptions reference_options;
        reference_options.dtype = dtype;
        reference_options.quant = quant;
        reference_options.kernels = LinearKernels::libtorch;
        const at::Tensor wd = w.to(dtype), xd = x.to(dtype);
        const at::Tensor reference = Linear(wd, reference_options)(xd).to(at::kDouble);
        for (kernels::Isa isa : kernels::supported_isas()) {
          ComputeOptions options = reference_options;
          options.kernels = parse_linear_kernels(kernels::isa_name(isa));
          const at::Tensor y = Linear(wd, options)(xd).to(at::kDouble);
          // bf16 results round to bf16 at the end (2^-8 relative) on either side.
          const double relative = dtype == at::kFloat ? 1e-5 : 1.6e-2;
          const at::Tensor bound = relative * (reference.abs() + at::linear(x.abs(), w.abs()).to(at::kDouble)) + 1e-6;
          EXPECT_LE(((y - reference).abs() / bound).max().item<double>(), 1.0)
              << kernels::isa_name(isa) << " rows " << rows << " " << short_dtype_name(dtype) << " "
              << quant_name(quant);
        }
      }
    }
  }
}

TEST(Nf4Linear, EveryOutputWithinHalfTheWidestLevelGapOfF32) {
  core::Rng rng(test_seed(63));
  at::NoGradGuard no_grad;
  for (WeightQuant quant : {WeightQuant::nf4, WeightQuant::nf4_nodq}) {
    for (LinearKernels choice : {LinearKernels::libtorch, LinearKernels::best}) {
      for (int trial = 0; trial < 8; ++trial) {
        const int64_t in = 1 + static_cast<int64_t>(rng.below(300));
        const int64_t out = 1 + static_cast<int64_t>(rng.below(70));
        // 20 rows: past kMatvecRowsMax, in two passes of the kernels.
        const int64_t tokens = trial % 3 == 0 ? 20 : 1 + static_cast<int64_t>(rng.below(3));
        const at::Tensor w = random_tensor(rng, {out, in}, 0.05);
        const at::Tensor bias = trial % 2 == 0 ? random_tensor(rng, {out}) : at::Tensor();
        const at::Tensor x = random_tensor(rng, {1, tokens, in});
        ComputeOptions options;
        options.kernels = choice;
        options.quant = quant;
        const at::Tensor y = Linear(w, options, bias)(x);
        const at::Tensor exact =
            at::linear(x.to(at::kDouble), w.to(at::kDouble), bias.defined() ? bias.to(at::kDouble) : bias);
        // Per weight: 0.152 of its block's true absmax plus how far the stored absmax is from it.
        const Nf4Weight q = quantize_nf4(w, quant == WeightQuant::nf4);
        const int64_t blocks = core::nf4_blocks_per_row(in);
        const at::Tensor padded = at::constant_pad_nd(w.to(at::kDouble), {0, blocks * 64 - in});
        const at::Tensor true_absmax = padded.reshape({out, blocks, 64}).abs().amax(-1);
        const at::Tensor stored = nf4_block_absmax(q).to(at::kDouble).reshape({out, blocks});
        const at::Tensor per_block = 0.1520 * true_absmax + (stored - true_absmax).abs();
        const at::Tensor per_weight =
            per_block.unsqueeze(-1).expand({out, blocks, 64}).reshape({out, blocks * 64}).slice(1, 0, in);
        const at::Tensor bound =
            at::linear(x.abs().to(at::kDouble), per_weight) + rounding_bound(x, dequantize_nf4(q, at::kFloat)) + 1e-9;
        const double excess = ((y.to(at::kDouble) - exact).abs() / bound).max().item<double>();
        EXPECT_LE(excess, 1.0) << quant_name(quant) << " " << linear_kernels_name(choice) << " in " << in << " out "
                               << out << " tokens " << tokens;
      }
    }
  }
}

TEST(Nf4Linear, RelativeErrorUnderTwelvePercentOnNormalWeights) {
  core::Rng rng(test_seed(64));
  at::NoGradGuard no_grad;
  const int64_t in = 4096, out = 256;  // a 7B block's row length
  const at::Tensor w = random_tensor(rng, {out, in}, 0.02);
  const at::Tensor x = random_tensor(rng, {1, 1, in});
  const at::Tensor reference = Linear(w, ComputeOptions{})(x);
  for (WeightQuant quant : {WeightQuant::nf4, WeightQuant::nf4_nodq}) {
    ComputeOptions quantized;
    quantized.quant = quant;
    const at::Tensor y = Linear(w, quantized)(x);
    const double relative_rms = ((y - reference).pow(2).mean() / reference.pow(2).mean()).sqrt().item<double>();
    fmt::print("{} relative RMS error: {:.4f}\n", quant_name(quant), relative_rms);
    EXPECT_LT(relative_rms, 0.12);
    EXPECT_GT(relative_rms, 0.01) << "the weights were not quantized";
  }
}

TEST(Nf4Linear, HoldsTheBytesTheLayoutStates) {
  at::NoGradGuard no_grad;
  const at::Tensor w = at::randn({4096, 4096});
  ComputeOptions options;
  options.quant = WeightQuant::nf4;
  const uint64_t dq = Linear(w, options).weight_bytes();
  options.quant = WeightQuant::nf4_nodq;
  const uint64_t plain = Linear(w, options).weight_bytes();
  EXPECT_EQ(dq, core::nf4_matrix_bytes(4096, 4096, true));
  EXPECT_EQ(plain, core::nf4_matrix_bytes(4096, 4096, false));
  const double weights = 4096.0 * 4096.0;
  fmt::print("NF4 bits per weight: {:.4f} double-quantized, {:.4f} with f32 absmaxes\n", 8.0 * dq / weights,
             8.0 * plain / weights);
  EXPECT_NEAR(8.0 * dq / weights, 4.127, 0.001);
  EXPECT_DOUBLE_EQ(8.0 * plain / weights, 4.5);
  EXPECT_NEAR(core::nf4_bits_per_weight(true), 4.127, 0.001);
  // A row of 100 weights takes two blocks; the padding is stored.
  EXPECT_EQ(core::nf4_matrix_bytes(3, 100, false), 3u * 2 * (32 + 4));
}

TEST(Nf4Linear, ZeroBlocksStayZeroAndExtremesAreExact) {
  at::NoGradGuard no_grad;
  at::Tensor w = at::zeros({3, 128});
  w[1].fill_(-2.0);  // every weight is -absmax: level 0 exactly
  w[2][5] = 3.0;
  for (WeightQuant quant : {WeightQuant::nf4, WeightQuant::nf4_nodq}) {
    ComputeOptions options;
    options.quant = quant;
    const at::Tensor y = Linear(w, options)(at::ones({1, 128}));
    EXPECT_TRUE(at::isfinite(y).all().item<bool>());
    EXPECT_EQ(y[0][0].item<float>(), 0.0f) << quant_name(quant);
    // With double quantization an absmax is stored to 8 bits of the dynamic code around the mean.
    const double tolerance = quant == WeightQuant::nf4 ? 0.02 * 256 : 1e-4;
    EXPECT_NEAR(y[0][1].item<float>(), -256.0f, tolerance) << quant_name(quant);
    EXPECT_NEAR(y[0][2].item<float>(), 3.0f, quant == WeightQuant::nf4 ? 0.06 : 1e-6) << quant_name(quant);
  }
}

TEST(Nf4Option, ParsedNamedAndDescribed) {
  EXPECT_EQ(describe(resolve_compute("f32", "cpu", "nf4")), "cpu f32 nf4");
  EXPECT_EQ(describe(resolve_compute("bf16", "cpu", "nf4-nodq")), "cpu bf16 nf4-nodq");
  try {
    resolve_compute("f32", "cpu", "nf3");
    FAIL() << "nf3 accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'nf3'"));
  }
}

// Gradients for the input flow through the widened weight as through at::linear.
TEST(Nf4Linear, AutogradSeesTheDequantizedWeight) {
  const at::Tensor w = at::randn({8, 64}) * 0.1;
  ComputeOptions options;
  options.quant = WeightQuant::nf4;
  const Linear linear(w, options);
  const at::Tensor x = at::randn({2, 64}).requires_grad_();
  linear(x).sum().backward();
  const at::Tensor dense = dequantize_nf4(quantize_nf4(w, true), at::kFloat);
  EXPECT_TRUE(at::allclose(x.grad(), dense.sum(0).expand({2, 64}), 1e-5, 1e-6));
}

}  // namespace
}  // namespace bouquet::gpu

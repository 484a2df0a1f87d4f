// gpu::Linear and its small-batch CPU kernels against libtorch: every instruction set this CPU
// has gives at::linear's result within f32 rounding on random shapes (odd sizes included), for
// f32 and bf16 weights, with and without bias, split over threads or not; autograd still flows.
#include "gpu/linear.h"
#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/kernels/matvec.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
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

// Normal entries drawn from `rng` (core::Rng, so a seed reproduces the tensor anywhere).
at::Tensor random_tensor(core::Rng& rng, std::vector<int64_t> shape, double scale = 1.0) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kDouble));
  double* data = t.data_ptr<double>();
  for (int64_t i = 0; i < t.numel(); ++i) data[i] = scale * rng.normal();
  return t.to(at::kFloat);
}

// sum_i |x_i w_i| + |bias|: the scale of every rounding error in a product.
at::Tensor abs_sum(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {}) {
  at::Tensor total = at::linear(x.abs().to(at::kDouble), w.abs().to(at::kDouble));
  return bias.defined() ? total + bias.abs().to(at::kDouble) : total;
}

// Error bound of an f32 dot product of length n (plus a bias) whatever the summation order:
// (n + 3) * 2^-24 times the sum of |x_i w_i| and |bias| (the textbook bound for recursive
// summation, the bias's addition and the final rounding).
at::Tensor f32_sum_bound(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {}) {
  const double n = static_cast<double>(w.size(1));
  const double u = std::ldexp(1.0, -24);
  return (n + 3) * u * abs_sum(x, w, bias) + 1e-30;
}

// Fails naming the worst element when |actual - exact| exceeds bound anywhere.
void expect_within(const at::Tensor& actual, const at::Tensor& exact, const at::Tensor& bound,
                   const std::string& what) {
  ASSERT_EQ(actual.sizes(), exact.sizes()) << what;
  const at::Tensor excess = (actual.to(at::kDouble) - exact).abs() / bound;
  const int64_t worst = excess.flatten().argmax().item<int64_t>();
  EXPECT_LE(excess.flatten()[worst].item<double>(), 1.0)
      << what << ": element " << worst << " is " << actual.flatten()[worst].item<double>() << ", exact "
      << exact.flatten()[worst].item<double>() << ", allowed error " << bound.flatten()[worst].item<double>();
}

LinearKernels kernels_for(kernels::Isa isa) {
  switch (isa) {
    case kernels::Isa::portable:
      return LinearKernels::portable;
    case kernels::Isa::avx2:
      return LinearKernels::avx2;
    case kernels::Isa::avx512:
      return LinearKernels::avx512;
  }
  return LinearKernels::libtorch;
}

// Sizes around the vector widths (8, 16) and the weight-row blocks (1, 2, 4), and a few larger.
int64_t random_size(core::Rng& rng) {
  static const int64_t kSizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257};
  return kSizes[rng.below(std::size(kSizes))];
}

TEST(MatvecKernels, EveryIsaMatchesExactProductOnRandomShapes) {
  core::Rng rng(test_seed(41));
  at::NoGradGuard no_grad;
  for (kernels::Isa isa : kernels::supported_isas()) {
    for (int trial = 0; trial < 60; ++trial) {
      const int64_t rows = 1 + static_cast<int64_t>(rng.below(kernels::kMatvecRowsMax));
      const int64_t in = random_size(rng);
      const int64_t out = random_size(rng);
      const at::Tensor x = random_tensor(rng, {rows, in});
      const at::Tensor w = random_tensor(rng, {out, in}, 0.1);
      at::Tensor y = at::full({rows, out}, std::nan(""), x.options());
      // Two ranges as two threads would take them: the split must not matter.
      const int64_t split = static_cast<int64_t>(rng.below(static_cast<uint64_t>(out) + 1));
      kernels::MatvecProblem p{x.data_ptr<float>(), rows, in, w.data_ptr(), kernels::WeightType::f32, nullptr, out,
                               y.data_ptr<float>(), {}};
      kernels::matvec(isa, p, 0, split);
      kernels::matvec(isa, p, split, out);
      const std::string what =
          fmt::format("{} rows {} in {} out {} split {}", kernels::isa_name(isa), rows, in, out, split);
      expect_within(y, at::linear(x.to(at::kDouble), w.to(at::kDouble)), f32_sum_bound(x, w), what);
    }
  }
}

TEST(MatvecKernels, Bf16AndInt8WeightsAreReadExactly) {
  core::Rng rng(test_seed(42));
  at::NoGradGuard no_grad;
  for (kernels::Isa isa : kernels::supported_isas()) {
    for (int trial = 0; trial < 30; ++trial) {
      const int64_t rows = 1 + static_cast<int64_t>(rng.below(kernels::kMatvecRowsMax));
      const int64_t in = random_size(rng);
      const int64_t out = random_size(rng);
      const at::Tensor x = random_tensor(rng, {rows, in});
      const at::Tensor w_bf16 = random_tensor(rng, {out, in}, 0.1).to(at::kBFloat16);
      const at::Tensor w_int8 = (random_tensor(rng, {out, in}, 60.0)).round().clamp(-127, 127).to(at::kChar);
      const at::Tensor scales = random_tensor(rng, {out}, 0.01).abs();
      const std::string what = fmt::format("{} rows {} in {} out {}", kernels::isa_name(isa), rows, in, out);

      at::Tensor y = at::empty({rows, out}, x.options());
      kernels::MatvecProblem p{
          x.data_ptr<float>(), rows, in, w_bf16.data_ptr(), kernels::WeightType::bf16, nullptr, out,
          y.data_ptr<float>(), {}};
      kernels::matvec(isa, p, 0, out);
      const at::Tensor w_bf16_exact = w_bf16.to(at::kDouble);
      expect_within(y, at::linear(x.to(at::kDouble), w_bf16_exact), f32_sum_bound(x, w_bf16_exact), "bf16 " + what);

      p.weight = w_int8.data_ptr();
      p.weight_type = kernels::WeightType::int8;
      p.scales = scales.data_ptr<float>();
      kernels::matvec(isa, p, 0, out);
      const at::Tensor w_int8_exact = w_int8.to(at::kDouble) * scales.to(at::kDouble).unsqueeze(1);
      expect_within(y, at::linear(x.to(at::kDouble), w_int8_exact), f32_sum_bound(x, w_int8_exact), "int8 " + what);
    }
  }
}

// What a block sees: Linear on [batch, tokens, in] equals at::linear, bias included, for decode
// (kernels) and for prefill-sized inputs (libtorch), in f32 and bf16.
TEST(Linear, MatchesAtLinearForEveryKernelChoice) {
  core::Rng rng(test_seed(43));
  at::NoGradGuard no_grad;
  std::vector<LinearKernels> choices = {LinearKernels::best, LinearKernels::libtorch};
  for (kernels::Isa isa : kernels::supported_isas()) choices.push_back(kernels_for(isa));
  for (LinearKernels choice : choices) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (int trial = 0; trial < 12; ++trial) {
        const int64_t batch = 1 + static_cast<int64_t>(rng.below(3));
        const int64_t tokens = 1 + static_cast<int64_t>(rng.below(trial % 3 == 0 ? 12 : 3));
        const int64_t in = random_size(rng);
        const int64_t out = random_size(rng);
        const at::Tensor w = random_tensor(rng, {out, in}, 0.1).to(dtype);
        const at::Tensor bias = trial % 2 == 0 ? random_tensor(rng, {out}).to(dtype) : at::Tensor();
        const at::Tensor x = random_tensor(rng, {batch, tokens, in}).to(dtype);
        ComputeOptions options;
        options.dtype = dtype;
        options.kernels = choice;
        const at::Tensor y = Linear(w, options, bias)(x);
        const std::string what =
            fmt::format("{} {} batch {} tokens {} in {} out {} bias {}", linear_kernels_name(choice),
                        short_dtype_name(dtype), batch, tokens, in, out, bias.defined());
        ASSERT_EQ(y.scalar_type(), dtype) << what;
        const at::Tensor exact =
            at::linear(x.to(at::kDouble), w.to(at::kDouble), bias.defined() ? bias.to(at::kDouble) : bias);
        // bf16 results are rounded to bf16 (2^-8 relative) once before the bias is added and once
        // after: both errors scale with sum |x_i w_i| + |bias| at most.
        at::Tensor bound = f32_sum_bound(x, w, bias);
        if (dtype == at::kBFloat16) bound = bound + 1.01 * std::ldexp(2.0, -8) * abs_sum(x, w, bias);
        expect_within(y, exact, bound, what);
      }
    }
  }
}

TEST(Linear, ThreadsSplitTheOutputsWithoutChangingThem) {
  core::Rng rng(test_seed(44));
  at::NoGradGuard no_grad;
  const int threads_before = at::get_num_threads();
  const at::Tensor w = random_tensor(rng, {1030, 77}, 0.1);
  const at::Tensor x = random_tensor(rng, {1, 2, 77});
  const Linear linear(w, ComputeOptions{});
  at::set_num_threads(1);
  const at::Tensor one = linear(x);
  EXPECT_EQ(last_product_threads(), 1);
  at::set_num_threads(2);
  const at::Tensor two = linear(x);
  // Two threads took part (from this layer, at::parallel_for once ran everything on one).
  EXPECT_EQ(last_product_threads(), 2);
  at::set_num_threads(threads_before);
  // Each output is one dot product computed by the same code whichever thread runs it.
  EXPECT_TRUE(at::equal(one, two));
}

// Autograd must not notice the kernels: with gradients recorded for the input, forward and
// backward equal at::linear's (f32, and int8 whose weight is the dequantized matrix).
TEST(Linear, GradientsFlowAsThroughAtLinear) {
  core::Rng rng(test_seed(45));
  for (WeightQuant quant : {WeightQuant::none, WeightQuant::int8}) {
    const at::Tensor w = random_tensor(rng, {33, 20}, 0.1);
    const at::Tensor bias = random_tensor(rng, {33});
    const at::Tensor x0 = random_tensor(rng, {1, 1, 20});
    ComputeOptions options;
    options.quant = quant;
    const Linear linear(w, options, bias);

    const at::Tensor x = x0.clone().requires_grad_(true);
    const at::Tensor y = linear(x);
    ASSERT_TRUE(y.requires_grad());
    (y * y).sum().backward();

    at::Tensor w_used = w;
    if (quant == WeightQuant::int8) {
      // The same matrix the quantized Linear holds: per-row max |w| / 127 scales.
      const at::Tensor scales = w.abs().amax(1, true) / 127.0;
      w_used = (w / scales).round() * scales;
    }
    const at::Tensor x_ref = x0.clone().requires_grad_(true);
    const at::Tensor y_ref = at::linear(x_ref, w_used, bias);
    (y_ref * y_ref).sum().backward();
    EXPECT_TRUE(at::allclose(y, y_ref, 1e-5, 1e-5)) << "quant " << (quant == WeightQuant::int8);
    EXPECT_TRUE(at::allclose(x.grad(), x_ref.grad(), 1e-5, 1e-5)) << "quant " << (quant == WeightQuant::int8);
  }
}

TEST(LinearKernelsOption, NamesParseAndMissingInstructionSetsAreOneClearError) {
  EXPECT_EQ(parse_linear_kernels("best"), LinearKernels::best);
  EXPECT_EQ(parse_linear_kernels("libtorch"), LinearKernels::libtorch);
  EXPECT_EQ(parse_linear_kernels("portable"), LinearKernels::portable);
  EXPECT_THROW(parse_linear_kernels("sse9"), InputError);
  for (auto [name, isa] : {std::pair{"avx2", kernels::Isa::avx2}, {"avx512", kernels::Isa::avx512}}) {
    if (kernels::isa_supported(isa)) {
      EXPECT_EQ(linear_kernels_name(parse_linear_kernels(name)), name);
    } else {
      EXPECT_THROW(parse_linear_kernels(name), InputError) << name;
    }
  }
}

}  // namespace
}  // namespace bouquet::gpu

// Whole tiny models through gpu::Linear: with the small-batch kernels (every instruction set this
// CPU has) a Llama generates the same greedy ids as with libtorch's at::linear, and close logits;
// with int8 and NF4 weights its logits stay within the stated tolerance of f32 (below).
#include "gpu/checkpoint.h"
#include "gpu/family.h"
#include "gpu/kernels/matvec.h"
#include "gpu/model_config.h"
#include "gpu/nf4.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

struct LoadedModel {
  std::unique_ptr<Head> head;
  std::vector<std::unique_ptr<Block>> blocks;
};

LoadedModel load_model(const fs::path& dir, const ComputeOptions& options) {
  const ModelConfig config = load_model_config(dir);
  const Checkpoint checkpoint(dir);
  LoadedModel model;
  model.head = load_head(config, checkpoint, options);
  for (int64_t b = 0; b < config.num_layers; ++b) {
    model.blocks.push_back(load_block(config, checkpoint, b, options));
  }
  return model;
}

struct GreedyRun {
  std::vector<int64_t> ids;
  at::Tensor first_logits;  // [vocab] f32, after the prompt
};

// Prefill of the whole prompt (rows = prompt length), then one row per step, as a server sees it.
GreedyRun greedy(const LoadedModel& model, const std::vector<int64_t>& prompt, int64_t count) {
  at::NoGradGuard no_grad;
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + count;
  std::vector<KvCache> caches;
  for (const auto& block : model.blocks) caches.push_back(block->make_cache(1, capacity));
  GreedyRun run;
  at::Tensor ids = at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  int64_t position = 0;
  for (int64_t step = 0; step < count; ++step) {
    at::Tensor hidden = model.head->embed(ids);
    for (size_t b = 0; b < model.blocks.size(); ++b) {
      hidden = model.blocks[b]->forward(hidden, position, &caches[b]);
    }
    const at::Tensor logits = model.head->logits(hidden)[0][-1];
    if (step == 0) run.first_logits = logits;
    position += ids.size(1);
    const int64_t next = logits.argmax().item<int64_t>();
    run.ids.push_back(next);
    ids = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong));
  }
  return run;
}

const std::vector<int64_t> kPrompt = {1, 45, 300, 12, 99, 7, 260};
constexpr int64_t kNewTokens = 24;

class KernelModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_dir("kernel_model"));
    TinyModelConfig config = testing::small_tiny(*dir_);
    config.hidden = 96;  // not a multiple of 64: the kernels' remainders run too
    config.intermediate = 200;
    config.heads = 6;
    config.kv_heads = 3;
    write_tiny_checkpoint(config);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path* dir_;
};

fs::path* KernelModel::dir_ = nullptr;

TEST_F(KernelModel, KernelsGiveLibtorchsGreedyIds) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    ComputeOptions reference_options;
    reference_options.dtype = dtype;
    reference_options.kernels = LinearKernels::libtorch;
    const GreedyRun reference = greedy(load_model(*dir_, reference_options), kPrompt, kNewTokens);
    for (kernels::Isa isa : kernels::supported_isas()) {
      ComputeOptions options = reference_options;
      options.kernels = parse_linear_kernels(kernels::isa_name(isa));
      const GreedyRun run = greedy(load_model(*dir_, options), kPrompt, kNewTokens);
      const std::string what = fmt::format("{} {}", short_dtype_name(dtype), kernels::isa_name(isa));
      EXPECT_EQ(run.ids, reference.ids) << what << ": " << fmt::format("{}", run.ids) << " vs "
                                        << fmt::format("{}", reference.ids);
      // f32: only the summation order differs; bf16: roundings of bf16 intermediates too.
      const double tolerance = dtype == at::kFloat ? 1e-4 : 0.1;
      EXPECT_LE((run.first_logits - reference.first_logits).abs().max().item<double>(), tolerance) << what;
    }
  }
}

// Stated tolerance for int8 weights on this model: first-step logits within 2% of their range
// (max - min) of the f32 logits, and the same first greedy token.
TEST_F(KernelModel, Int8LogitsStayNearF32) {
  const GreedyRun f32 = greedy(load_model(*dir_, ComputeOptions{}), kPrompt, kNewTokens);
  ComputeOptions options;
  options.quant = WeightQuant::int8;
  const GreedyRun int8 = greedy(load_model(*dir_, options), kPrompt, kNewTokens);
  const double range = (f32.first_logits.max() - f32.first_logits.min()).item<double>();
  const double worst = (int8.first_logits - f32.first_logits).abs().max().item<double>();
  size_t same_prefix = 0;
  while (same_prefix < f32.ids.size() && f32.ids[same_prefix] == int8.ids[same_prefix]) ++same_prefix;
  fmt::print(
      "int8 vs f32: worst first-step logit difference {:.4f} of a range {:.2f}; "
      "first {} of {} greedy ids equal\n",
      worst, range, same_prefix, f32.ids.size());
  EXPECT_LE(worst, 0.02 * range);
  EXPECT_EQ(int8.ids.front(), f32.ids.front());
}

// The relative RMS error quantization puts into the model's block matrices (every 2-D block
// tensor): ||W_q - W|| / ||W|| over all of them together.
double weight_error(const fs::path& dir, WeightQuant quant) {
  at::NoGradGuard no_grad;
  const ModelConfig config = load_model_config(dir);
  const Checkpoint checkpoint(dir);
  double error = 0, total = 0;
  for (int64_t b = 0; b < config.num_layers; ++b) {
    for (const TensorSpec& spec : family_of(config).block_tensors(config, b)) {
      if (spec.shape.size() != 2) continue;
      const at::Tensor w = checkpoint.read(spec.name).to(at::kDouble);
      at::Tensor q;
      if (quant == WeightQuant::int8) {
        const at::Tensor scale = w.abs().amax(1, true) / 127;
        q = at::round(w / scale) * scale;
      } else {
        q = dequantize_nf4(quantize_nf4(w, quant == WeightQuant::nf4), at::kDouble);
      }
      error += (q - w).pow(2).sum().item<double>();
      total += w.pow(2).sum().item<double>();
    }
  }
  return std::sqrt(error / total);
}

// Stated tolerance, derived from the weights' own error: the first-step logits' RMS difference
// from f32, relative to the RMS of the f32 logits, stays within 2 * num_layers times the weights'
// relative RMS error (to first order each block adds the error of two matrices in sequence, and
// the residual stream carries every block's). Measured ratios are printed; they sit well below.
TEST_F(KernelModel, Int8AndNf4LogitsWithinTheirWeightErrorOfF32) {
  const GreedyRun f32 = greedy(load_model(*dir_, ComputeOptions{}), kPrompt, kNewTokens);
  const int64_t layers = load_model_config(*dir_).num_layers;
  const double logits_rms = f32.first_logits.pow(2).mean().sqrt().item<double>();
  for (WeightQuant quant : {WeightQuant::int8, WeightQuant::nf4, WeightQuant::nf4_nodq}) {
    ComputeOptions options;
    options.quant = quant;
    const GreedyRun run = greedy(load_model(*dir_, options), kPrompt, kNewTokens);
    const double weights = weight_error(*dir_, quant);
    const double logits = (run.first_logits - f32.first_logits).pow(2).mean().sqrt().item<double>() / logits_rms;
    size_t same = 0;
    for (size_t i = 0; i < f32.ids.size(); ++i) same += f32.ids[i] == run.ids[i];
    fmt::print(
        "{} vs f32: weights' relative RMS error {:.4f}, first-step logits' {:.4f} (ratio {:.2f}, bound {}); "
        "{} of {} greedy ids equal\n",
        quant_name(quant), weights, logits, logits / weights, 2 * layers, same, f32.ids.size());
    EXPECT_LE(logits, 2.0 * static_cast<double>(layers) * weights) << quant_name(quant);
    EXPECT_GT(logits, 0.0) << quant_name(quant) << ": the weights were not quantized";
  }
}

}  // namespace
}  // namespace bouquet::gpu

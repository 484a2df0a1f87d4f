// Quantized weights at real sizes (slow: a 7B-shaped block, a real checkpoint).
// - A Llama-2-7B-shaped block with int8 and NF4 weights: the RMS of its output's difference from
//   f32 stays within 1.5x the difference that random noise of the same size gives (each matrix
//   perturbed by normal noise with the RMS of its own quantization error): rounding to levels
//   must hurt no more than the noise its size predicts. (Against the weights' relative error
//   itself the block amplifies ~6-11x: attention's softmax and the MLP's product of two
//   projections.)
// - SmolLM2-135M (the GGUF scripts/fetch-smollm2.sh fetches; skipped without it): with the f32
//   model's 32 greedy ids fed back (teacher forcing), the share of positions where a quantized
//   model's top token is the f32 model's is printed; asserted only against a loose floor.
#include "core/rng.h"
#include "gpu/checkpoint.h"
#include "gpu/client_head.h"
#include "gpu/family.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/model_config.h"
#include "gpu/nf4.h"
#include "gpu/span_runner.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/tokenizer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("BOUQUET_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
  }
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fmt::print("seed {} (reproduce: BOUQUET_SEED={} gpu_slow_tests --gtest_filter='{}.{}')\n", seed, seed,
             info->test_suite_name(), info->name());
  return seed;
}

at::Tensor quantized(const at::Tensor& w, WeightQuant quant) {
  if (quant == WeightQuant::int8) {
    const at::Tensor scale = w.abs().amax(1, true) / 127;
    return at::round(w / scale) * scale;
  }
  return dequantize_nf4(quantize_nf4(w, quant == WeightQuant::nf4), at::kFloat);
}

// A block's tensors drawn once (normal, with the family's mean and spread) and kept, so that every
// quantization sees the same weights.
class DrawnWeights final : public TensorSource {
 public:
  DrawnWeights(const std::vector<TensorSpec>& specs, uint64_t seed) {
    core::Rng rng(seed);
    for (const TensorSpec& spec : specs) {
      at::Tensor t = at::empty(spec.shape, at::TensorOptions().dtype(at::kFloat));
      core::Rng draw = rng.derive(tensors_.size());
      float* data = t.data_ptr<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        data[i] = static_cast<float>(spec.init_mean + spec.init_std * draw.normal());
      }
      tensors_[spec.name] = t;
    }
  }
  std::optional<TensorInfo> info(const std::string& name) const override {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) return std::nullopt;
    TensorInfo info;
    info.name = name;
    info.shape = it->second.sizes().vec();
    return info;
  }
  at::Tensor read(const std::string& name) const override { return tensors_.at(name); }
  // The same weights, each matrix plus normal noise as large (RMS) as `quant`'s error on it.
  DrawnWeights with_noise_like(WeightQuant quant, uint64_t seed) const {
    DrawnWeights noisy = *this;
    at::Generator generator = at::detail::createCPUGenerator(seed);
    for (auto& [name, w] : noisy.tensors_) {
      if (w.dim() != 2) continue;
      const double rms = (quantized(w, quant) - w).pow(2).mean().sqrt().item<double>();
      w = w + at::randn(w.sizes(), generator) * rms;
    }
    return noisy;
  }
  std::string where(const std::string& name) const override { return "drawn weights"; }
  const std::map<std::string, at::Tensor>& tensors() const { return tensors_; }

 private:
  std::map<std::string, at::Tensor> tensors_;
};

TEST(QuantizedBlock7B, OutputWithinWhatNoiseOfTheSameSizeGives) {
  const uint64_t seed = test_seed(71);
  at::NoGradGuard no_grad;
  ModelConfig model;
  model.family = "llama";
  model.hidden_size = 4096;
  model.intermediate_size = 11008;
  model.num_layers = 1;
  model.num_heads = 32;
  model.num_kv_heads = 32;
  model.head_dim = 128;
  model.vocab_size = 32000;
  model.max_position_embeddings = 4096;
  const DrawnWeights weights(family_of(model).block_tensors(model, 0), seed);
  core::Rng rng(seed + 1);
  at::Tensor x = at::empty({1, 6, 4096}, at::TensorOptions().dtype(at::kDouble));
  for (int64_t i = 0; i < x.numel(); ++i) x.data_ptr<double>()[i] = rng.normal();
  x = x.to(at::kFloat);
  // Prefill of 5 positions, then one decode step: both the libtorch path and the kernels.
  const auto run = [&](const TensorSource& source, WeightQuant quant) {
    ComputeOptions options;
    options.quant = quant;
    const auto block = load_block(model, source, 0, options);
    KvCache cache = block->make_cache(1, 6);
    const at::Tensor prefill = block->forward(x.slice(1, 0, 5), 0, &cache);
    const at::Tensor decode = block->forward(x.slice(1, 5, 6), 5, &cache);
    return at::cat({prefill, decode}, 1) - x;
  };
  const at::Tensor f32 = run(weights, WeightQuant::none);
  const double f32_rms = f32.pow(2).mean().sqrt().item<double>();
  const auto error = [&](const at::Tensor& y) { return (y - f32).pow(2).mean().sqrt().item<double>() / f32_rms; };
  for (WeightQuant quant : {WeightQuant::int8, WeightQuant::nf4, WeightQuant::nf4_nodq}) {
    const double noise = error(run(weights.with_noise_like(quant, seed + 2), WeightQuant::none));
    const double rounding = error(run(weights, quant));
    fmt::print(
        "7B-shaped block, {}: output's RMS error relative to the block's f32 contribution {:.4f}; "
        "with noise of the same size instead {:.4f} (ratio {:.2f}, bound 1.5)\n",
        quant_name(quant), rounding, noise, rounding / noise);
    EXPECT_LE(rounding, 1.5 * noise) << quant_name(quant);
    EXPECT_GT(rounding, 0.0) << quant_name(quant);
  }
}

std::string smollm2(std::string& why) {
  int status = 0;
  const std::string out = testing::run_command(
      (fs::path(BOUQUET_SOURCE_DIR) / "scripts/fetch-smollm2.sh").string() + " 2>/dev/null", &status);
  if (status != 0 || out.empty()) {
    why = "SmolLM2 cannot be fetched here (scripts/fetch-smollm2.sh)";
    return "";
  }
  std::string path = out;
  while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
  return path.substr(path.rfind('\n') == std::string::npos ? 0 : path.rfind('\n') + 1);
}

TEST(QuantizedSmolLM2, TopTokensAgreeWithF32UnderTeacherForcing) {
  std::string why;
  const std::string model = smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const std::vector<std::string> prompts = {"The capital of France is", "Once upon a time, a little fox",
                                            "def fibonacci(n):", "Water boils at a temperature of"};
  const auto tokenizer = load_model_tokenizer(model);
  const ClientHead head({model, "f32", "cpu"});
  std::vector<std::vector<TokenId>> sequences;
  std::vector<size_t> prompt_lengths;
  for (const std::string& prompt : prompts) {
    std::vector<TokenId> ids = tokenizer->encode(prompt);
    prompt_lengths.push_back(ids.size());
    const std::vector<TokenId> greedy = testing::engine_greedy_ids(model, ids, 32);
    ids.insert(ids.end(), greedy.begin(), greedy.end());
    sequences.push_back(ids);
  }
  at::NoGradGuard no_grad;
  for (const std::string quant : {"none", "int8", "nf4", "nf4-nodq"}) {
    const SpanRunner span({model, 0, -1, "f32", "cpu", quant});
    int64_t same = 0, total = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
      const std::vector<TokenId>& ids = sequences[s];
      const at::Tensor top = head.logits(span.forward(head.embed(ids)))[0].argmax(-1);
      for (size_t pos = prompt_lengths[s] - 1; pos + 1 < ids.size(); ++pos) {
        same += top[static_cast<int64_t>(pos)].item<int64_t>() == ids[pos + 1];
        ++total;
      }
    }
    const double rate = static_cast<double>(same) / static_cast<double>(total);
    fmt::print("SmolLM2 {}: top token equals f32's greedy id at {} of {} positions ({:.1f}%)\n", quant, same, total,
               100.0 * rate);
    EXPECT_GE(rate, quant == std::string("none") ? 0.95 : 0.5) << quant;
  }
}

}  // namespace
}  // namespace bouquet::gpu

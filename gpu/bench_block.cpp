#include "gpu/bench_block.h"

#include "core/rng.h"
#include "gpu/checkpoint.h"
#include "gpu/errors.h"
#include "gpu/family.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace bouquet::gpu {
namespace {

using Clock = std::chrono::steady_clock;

// Random weights with the family's shapes, made on demand: the benchmark needs no checkpoint.
class RandomWeights final : public TensorSource {
 public:
  RandomWeights(std::vector<TensorSpec> specs, uint64_t seed) : specs_(std::move(specs)), rng_(seed) {}

  std::optional<TensorInfo> info(const std::string& name) const override {
    const TensorSpec* spec = find(name);
    if (spec == nullptr) return std::nullopt;
    TensorInfo info;
    info.name = name;
    info.shape = spec->shape;
    return info;
  }

  // Uniform with the spec's mean and standard deviation: values only need to be plausible, and
  // uniform draws fill ~800 MB far faster than normal ones.
  at::Tensor read(const std::string& name) const override {
    const TensorSpec* spec = find(name);
    at::Tensor t = at::empty(spec->shape, at::TensorOptions().dtype(at::kFloat));
    core::Rng rng = rng_.derive(static_cast<uint64_t>(spec - specs_.data()));
    const double half_width = spec->init_std * std::sqrt(3.0);
    float* data = t.data_ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      data[i] = static_cast<float>(spec->init_mean + half_width * (2 * rng.uniform01() - 1));
    }
    return t;
  }

  std::string where(const std::string& name) const override { return "random weights"; }

 private:
  const TensorSpec* find(const std::string& name) const {
    for (const auto& spec : specs_) {
      if (spec.name == name) return &spec;
    }
    return nullptr;
  }
  std::vector<TensorSpec> specs_;
  core::Rng rng_;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

void synchronize(const c10::Device& device) {
  // On CUDA a kernel launch returns before the work is done: read a value back to wait for it.
  if (device.is_cuda()) at::zeros({1}, at::TensorOptions().device(device)).item<float>();
}

}  // namespace

BenchBlockResult bench_block(const BenchBlockConfig& config) {
  if (config.hidden <= 0 || config.heads <= 0 || config.intermediate <= 0 || config.steps <= 0 ||
      config.cached_tokens < 0 || config.threads < 0 || config.hidden % config.heads != 0) {
    throw InputError("bench-block needs positive sizes, steps > 0, and hidden a multiple of heads");
  }
  if (config.threads > 0) at::set_num_threads(config.threads);
  ModelConfig model;
  model.family = "llama";
  model.hidden_size = config.hidden;
  model.intermediate_size = config.intermediate;
  model.num_layers = 1;
  model.num_heads = config.heads;
  model.num_kv_heads = config.kv_heads > 0 ? config.kv_heads : config.heads;
  model.head_dim = config.hidden / config.heads;
  model.vocab_size = 32000;
  model.max_position_embeddings = 4096;
  if (model.num_heads % model.num_kv_heads != 0 || model.head_dim % 2 != 0) {
    throw InputError("bench-block: kv heads must divide heads, and head size must be even");
  }
  const ComputeOptions compute = resolve_compute(config.dtype, config.device);
  const RandomWeights weights(family_of(model).block_tensors(model, 0), config.seed);
  const auto block = load_block(model, weights, 0, compute);

  BenchBlockResult result;
  result.weight_bytes = block->weight_bytes();
  result.threads = at::get_num_threads();
  result.compute = describe(compute);

  at::NoGradGuard no_grad;
  const auto options = at::TensorOptions().device(compute.device).dtype(compute.dtype);
  KvCache cache = block->make_cache(1, config.cached_tokens + 1);
  if (config.cached_tokens > 0) {
    block->forward(at::randn({1, config.cached_tokens, config.hidden}, options), 0, &cache);
  }
  const at::Tensor token = at::randn({1, 1, config.hidden}, options);
  block->forward(token, config.cached_tokens, &cache);  // warm-up: first-touch, kernel selection
  std::vector<double> steps;
  for (int64_t i = 0; i < config.steps; ++i) {
    synchronize(compute.device);
    const auto start = Clock::now();
    block->forward(token, config.cached_tokens, &cache);  // same slot each time: same work
    synchronize(compute.device);
    steps.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  result.step_s = median(steps);
  result.step_min_s = *std::min_element(steps.begin(), steps.end());

  // The probe: sum a buffer of the block's weight size, so every byte crosses the memory bus
  // once, with the same threads as the block. Filled first so no page fault is timed.
  const at::Tensor buffer =
      at::ones({static_cast<int64_t>(result.weight_bytes / 4)}, options.dtype(at::kFloat));
  at::sum(buffer).item<float>();
  std::vector<double> streams;
  for (int64_t i = 0; i < std::max<int64_t>(config.steps, 5); ++i) {
    const auto start = Clock::now();
    at::sum(buffer).item<float>();
    streams.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  result.stream_s = median(streams);
  result.stream_min_s = *std::min_element(streams.begin(), streams.end());
  result.stream_gbps = static_cast<double>(buffer.numel() * 4) / result.stream_s / 1e9;
  result.ratio = result.step_s / result.stream_s;
  result.best_ratio = result.step_min_s / result.stream_min_s;
  return result;
}

std::string format_bench_block(const BenchBlockConfig& c, const BenchBlockResult& r) {
  const int64_t kv = c.kv_heads > 0 ? c.kv_heads : c.heads;
  return fmt::format(
      "block: Llama, hidden {}, heads {} (kv {}), intermediate {}; {}, {} thread(s)\n"
      "weights: {:.1f} MB\n"
      "decode step (1 new token, {} cached): {:.2f} ms median, {:.2f} ms best of {}\n"
      "weight streaming (memory probe, {:.1f} MB once): {:.2f} ms median = {:.1f} GB/s, "
      "{:.2f} ms best = {:.1f} GB/s\n"
      "ratio step / weight streaming: {:.2f} (medians), {:.2f} (bests)\n",
      c.hidden, c.heads, kv, c.intermediate, r.compute, r.threads, r.weight_bytes / 1e6,
      c.cached_tokens, r.step_s * 1e3, r.step_min_s * 1e3, c.steps, r.weight_bytes / 1e6,
      r.stream_s * 1e3, r.stream_gbps, r.stream_min_s * 1e3, r.weight_bytes / r.stream_min_s / 1e9,
      r.ratio, r.best_ratio);
}

}  // namespace bouquet::gpu

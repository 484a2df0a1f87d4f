#include "gpu/bench_block.h"

#include "core/rng.h"
#include "gpu/checkpoint.h"
#include "gpu/cuda_device.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/kernels/matvec.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/accumulate.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
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
  // uniform draws fill ~800 MB far faster than normal ones. Drawn once per name: the blocks of a
  // chain share values (each still holds and reads its own copy).
  at::Tensor read(const std::string& name) const override {
    const TensorSpec* spec = find(name);
    const auto it = drawn_.find(name);
    if (it != drawn_.end()) return it->second.clone();  // a block may keep the tensor as it is
    at::Tensor t = at::empty(spec->shape, at::TensorOptions().dtype(at::kFloat));
    core::Rng rng = rng_.derive(static_cast<uint64_t>(spec - specs_.data()));
    const double half_width = spec->init_std * std::sqrt(3.0);
    float* data = t.data_ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      data[i] = static_cast<float>(spec->init_mean + half_width * (2 * rng.uniform01() - 1));
    }
    drawn_.emplace(name, t);
    return t.clone();
  }

  std::string where(const std::string& name) const override { return "random weights"; }
  const std::vector<TensorSpec>& specs() const { return specs_; }

 private:
  const TensorSpec* find(const std::string& name) const {
    for (const auto& spec : specs_) {
      if (spec.name == name) return &spec;
    }
    return nullptr;
  }
  std::vector<TensorSpec> specs_;
  core::Rng rng_;
  mutable std::map<std::string, at::Tensor> drawn_;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// Seconds to sum `buffer` once (a value is read back, which also waits for CUDA).
double time_sum(const at::Tensor& buffer) {
  const auto start = Clock::now();
  at::sum(buffer).item<float>();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void synchronize(const c10::Device& device) {
  // On CUDA a kernel launch returns before the work is done: read a value back to wait for it.
  if (device.is_cuda()) at::zeros({1}, at::TensorOptions().device(device)).item<float>();
}

// The kernels a decode step (one row) runs with these options, as Linear chooses them.
std::string used_kernels(const ComputeOptions& compute) {
  const bool kernel_dtype = compute.dtype == at::kFloat || compute.dtype == at::kBFloat16;
  if (!compute.device.is_cpu() || !kernel_dtype || compute.kernels == LinearKernels::libtorch) {
    return "libtorch";
  }
  if (compute.kernels == LinearKernels::best) {
    return std::string(kernels::isa_name(kernels::detected_isa()));
  }
  return std::string(linear_kernels_name(compute.kernels));
}

}  // namespace

BenchBlockResult bench_block(const BenchBlockConfig& config) {
  if (config.hidden <= 0 || config.heads <= 0 || config.intermediate <= 0 || config.steps <= 0 ||
      config.cached_tokens < 0 || config.threads < 0 || config.hidden % config.heads != 0) {
    throw InputError("bench-block needs positive sizes, steps > 0, and hidden a multiple of heads");
  }
  if (config.blocks < 1 || config.blocks > 1024) {
    throw InputError(fmt::format("bench-block --blocks {}: must be in 1..1024", config.blocks));
  }
  if (config.blocks > 1 && !config.batches.empty()) {
    throw InputError("bench-block: --batch times one block; give it without --blocks");
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
  ComputeOptions compute = resolve_compute(config.dtype, config.device, config.quant);
  compute.kernels = parse_linear_kernels(config.kernels);
  const RandomWeights weights(family_of(model).block_tensors(model, 0), config.seed);
  std::vector<std::unique_ptr<Block>> chain;
  for (int64_t b = 0; b < config.blocks; ++b) chain.push_back(load_block(model, weights, 0, compute));
  const auto& block = chain.front();

  BenchBlockResult result;
  for (const auto& b : chain) result.weight_bytes += b->weight_bytes();
  result.threads = at::get_num_threads();
  result.compute = describe(compute);
  result.kernels = used_kernels(compute);
  result.device_name = describe_device(compute.device);

  at::NoGradGuard no_grad;
  const auto options = at::TensorOptions().device(compute.device).dtype(compute.dtype);
  std::vector<KvCache> chain_caches;
  for (const auto& b : chain) {
    chain_caches.push_back(b->make_cache(1, config.cached_tokens + 1));
    if (config.cached_tokens > 0) {
      b->forward(at::randn({1, config.cached_tokens, config.hidden}, options), 0, &chain_caches.back());
    }
  }
  const at::Tensor token = at::randn({1, 1, config.hidden}, options);
  // One decode step through the chain; the same slot each time: the same work.
  const auto decode = [&] {
    at::Tensor x = token;
    for (size_t b = 0; b < chain.size(); ++b) x = chain[b]->forward(x, config.cached_tokens, &chain_caches[b]);
  };
  decode();  // warm-up: first-touch, kernel selection

  // The probes: sum a buffer of the block's weight size (and one of its f32 size, the floor that
  // smaller weights should beat), so every byte crosses the memory bus once, with the same
  // threads as the block. Filled first so no page fault is timed.
  result.f32_weight_bytes = 0;
  for (const TensorSpec& spec : weights.specs()) {
    result.f32_weight_bytes += 4 * static_cast<uint64_t>(c10::multiply_integers(spec.shape));
  }
  result.f32_weight_bytes *= static_cast<uint64_t>(config.blocks);
  const auto float_options = options.dtype(at::kFloat);
  const at::Tensor buffer = at::ones({static_cast<int64_t>(result.weight_bytes / 4)}, float_options);
  at::Tensor f32_buffer;
  if (result.f32_weight_bytes != result.weight_bytes) {
    f32_buffer = at::ones({static_cast<int64_t>(result.f32_weight_bytes / 4)}, float_options);
  }
  // Steps and probes alternate, so a neighbour's load on a shared machine weighs on both alike.
  std::vector<double> steps, streams, f32_streams;
  for (int64_t i = 0; i < std::max<int64_t>(config.steps, 5); ++i) {
    if (i < config.steps) {
      synchronize(compute.device);
      const auto start = Clock::now();
      decode();
      synchronize(compute.device);
      steps.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    streams.push_back(time_sum(buffer));
    if (f32_buffer.defined()) f32_streams.push_back(time_sum(f32_buffer));
  }
  if (f32_streams.empty()) f32_streams = streams;
  result.step_s = median(steps);
  result.step_min_s = *std::min_element(steps.begin(), steps.end());
  result.stream_s = median(streams);
  result.stream_min_s = *std::min_element(streams.begin(), streams.end());
  result.stream_gbps = static_cast<double>(buffer.numel() * 4) / result.stream_s / 1e9;
  result.ratio = result.step_s / result.stream_s;
  result.best_ratio = result.step_min_s / result.stream_min_s;
  result.f32_stream_s = median(f32_streams);
  result.f32_ratio = result.step_s / result.f32_stream_s;
  result.f32_best_ratio = result.step_min_s / *std::min_element(f32_streams.begin(), f32_streams.end());

  for (const int64_t sessions : config.batches) {
    if (sessions < 1 || sessions > 256) throw InputError(fmt::format("--batch: {} is not in 1..256", sessions));
    std::vector<KvCache> caches;
    for (int64_t s = 0; s < sessions; ++s) {
      caches.push_back(block->make_cache(1, config.cached_tokens + 1));
      if (config.cached_tokens > 0) {
        block->forward(at::randn({1, config.cached_tokens, config.hidden}, options), 0, &caches.back());
      }
    }
    std::vector<BatchPart> parts;
    for (int64_t s = 0; s < sessions; ++s) {
      parts.push_back(BatchPart{at::randn({1, 1, config.hidden}, options), config.cached_tokens, &caches[s]});
    }
    block->forward_batch(parts);  // warm-up
    std::vector<double> times;
    for (int64_t i = 0; i < config.steps; ++i) {
      synchronize(compute.device);
      const auto start = Clock::now();
      block->forward_batch(parts);  // the same slots each time: the same work
      synchronize(compute.device);
      times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    const double step = median(times);
    result.batches.push_back(BenchBatchRow{sessions, step, step / static_cast<double>(sessions)});
  }
  return result;
}

std::string batch_lines(const BenchBlockResult& r) {
  if (r.batches.empty()) return "";
  std::string out = fmt::format("{:>9} {:>14} {:>15} {:>12} {:>14}\n", "sessions", "batched step", "per session",
                                "x 1 session", "x streaming");
  const double one = r.batches.front().sessions == 1 ? r.batches.front().step_s : r.step_s;
  for (const auto& b : r.batches) {
    out += fmt::format("{:>9} {:>11.2f} ms {:>12.2f} ms {:>12.2f} {:>14.2f}\n", b.sessions, b.step_s * 1e3,
                       b.per_token_s * 1e3, b.step_s / one, b.step_s / r.stream_s);
  }
  return out;
}

// For weights smaller than f32: how the step compares with streaming the same block in f32.
std::string f32_floor_line(const BenchBlockResult& r) {
  if (r.f32_weight_bytes == r.weight_bytes) return "";
  return fmt::format(
      "f32 floor (streaming the same block's {:.1f} MB of f32 weights): {:.2f} ms median; "
      "ratio step / f32 floor: {:.2f} (medians), {:.2f} (bests)\n",
      r.f32_weight_bytes / 1e6, r.f32_stream_s * 1e3, r.f32_ratio, r.f32_best_ratio);
}

std::string format_bench_block(const BenchBlockConfig& c, const BenchBlockResult& r) {
  const int64_t kv = c.kv_heads > 0 ? c.kv_heads : c.heads;
  const std::string blocks = c.blocks == 1 ? "block" : fmt::format("{} blocks", c.blocks);
  const std::string device = r.device_name.empty() ? "" : fmt::format("device: {}\n", r.device_name);
  return fmt::format(
      "{}{}: Llama, hidden {}, heads {} (kv {}), intermediate {}; {}, {} kernels, {} thread(s)\n"
      "weights: {:.1f} MB\n"
      "decode step (1 new token, {} cached): {:.2f} ms median, {:.2f} ms best of {}\n"
      "weight streaming (memory probe, {:.1f} MB once): {:.2f} ms median = {:.1f} GB/s, "
      "{:.2f} ms best = {:.1f} GB/s\n"
      "ratio step / weight streaming: {:.2f} (medians), {:.2f} (bests)\n"
      "{}{}",
      device, blocks, c.hidden, c.heads, kv, c.intermediate, r.compute, r.kernels, r.threads, r.weight_bytes / 1e6,
      c.cached_tokens, r.step_s * 1e3, r.step_min_s * 1e3, c.steps, r.weight_bytes / 1e6, r.stream_s * 1e3,
      r.stream_gbps, r.stream_min_s * 1e3, r.weight_bytes / r.stream_min_s / 1e9, r.ratio, r.best_ratio,
      f32_floor_line(r), batch_lines(r));
}

}  // namespace bouquet::gpu

#include "gpu/span_compute.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include "core/check.h"
#include "gpu/cuda_device.h"
#include "gpu/errors.h"
#include "gpu/progress.h"
#include "gpu/safetensors.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"

namespace bouquet::net {

using core::ComputeOutput;
using core::ComputeRequest;
using core::Error;
using core::ErrorCode;
using core::Result;

SpanCompute::SpanCompute(const SpanComputeConfig& config) : span_(config.span) {
  if (span_.empty()) throw gpu::InputError(fmt::format("blocks {} is an empty span", span_.to_string()));
  std::optional<gpu::Progress> progress;
  if (config.show_progress) {
    progress.emplace(gpu::ProgressConfig{fmt::format("loading blocks {}", span_.to_string()), span_.size(), "blocks"});
  }
  uint64_t bytes = 0;
  for (uint32_t b = span_.begin; b < span_.end; ++b) {
    blocks_.push_back(std::make_unique<gpu::SpanRunner>(
        gpu::SpanRunnerConfig{config.model_dir, static_cast<int64_t>(b), static_cast<int64_t>(b) + 1, config.dtype,
                              config.device, config.quant, config.adapters}));
    bytes += blocks_.back()->checkpoint_bytes_read();
    if (progress) progress->update(b - span_.begin + 1, bytes);
  }
  stream_ = std::make_unique<gpu::ComputeStream>(blocks_.front()->compute().device);
}

SpanCompute::~SpanCompute() = default;

const gpu::ModelConfig& SpanCompute::model_config() const { return blocks_.front()->model_config(); }

uint32_t SpanCompute::hidden_size() const { return static_cast<uint32_t>(blocks_.front()->hidden_size()); }

uint64_t SpanCompute::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& block : blocks_) total += block->weight_bytes();
  return total;
}

uint64_t SpanCompute::cache_bytes_per_token() const {
  uint64_t total = 0;
  for (const auto& block : blocks_) total += block->cache_bytes_per_token();
  return total;
}

std::string SpanCompute::describe_compute() const { return gpu::describe(blocks_.front()->compute()); }

std::vector<std::string> SpanCompute::adapter_names() const { return blocks_.front()->adapter_names(); }

std::optional<uint64_t> SpanCompute::device_free_bytes() const {
  const auto memory = gpu::device_memory(blocks_.front()->compute().device);
  if (!memory) return std::nullopt;
  return memory->free_bytes;
}

size_t SpanCompute::open_caches() const {
  size_t n = 0;
  for (const auto& block : blocks_) n = std::max(n, block->session_count());
  return n;
}

std::vector<gpu::SpanRunner*> SpanCompute::runners(core::BlockSpan span) const {
  BOUQUET_CHECK(span_.contains(span), "compute asked for blocks this server does not hold");
  std::vector<gpu::SpanRunner*> out;
  for (uint32_t b = span.begin; b < span.end; ++b) out.push_back(blocks_[b - span_.begin].get());
  return out;
}

namespace {

// Deep prompts [blocks, batch or 1, prefix, hidden] of a request for `span`, checked against the
// inputs; undefined when the request has none. Each runner checks the rest of its slice's shape.
at::Tensor request_prompts(const ComputeRequest& request, const at::Tensor& inputs) {
  if (!request.prompts) return {};
  at::Tensor prompts = tensor_from_activation(*request.prompts);
  if (prompts.dim() != 4 || prompts.size(0) != static_cast<int64_t>(request.span.size()) || inputs.dim() != 3 ||
      (prompts.size(1) != 1 && prompts.size(1) != inputs.size(0))) {
    throw gpu::InputError(fmt::format(
        "deep prompts for blocks {} must be [{}, batch {} or 1, prefix, hidden], got {}", request.span.to_string(),
        request.span.size(), inputs.dim() == 3 ? inputs.size(0) : 0, gpu::format_shape(prompts.sizes().vec())));
  }
  return prompts;
}

at::Tensor block_prompts(const at::Tensor& prompts, size_t i) {
  return prompts.defined() ? prompts.narrow(0, static_cast<int64_t>(i), 1) : at::Tensor();
}

// What `compute` returns, with the engine's exceptions turned into the request's typed error.
template <typename F>
Result<ComputeOutput> to_error(const ComputeRequest& request, F&& compute) {
  try {
    return compute();
  } catch (const gpu::UnknownAdapterError& e) {
    return Error{ErrorCode::unknown_adapter, e.what()};
  } catch (const gpu::InputError& e) {
    return Error{ErrorCode::bad_request, e.what()};
  } catch (const std::exception& e) {
    if (gpu::is_out_of_memory(e)) {
      gpu::release_cached_memory();
      return Error{ErrorCode::compute_failed,
                   fmt::format("blocks {}: out of GPU memory for this request ({} rows of {} tokens); try a "
                               "shorter max length or another server",
                               request.span.to_string(), request.batch, request.max_length)};
    }
    return Error{ErrorCode::compute_failed, fmt::format("blocks {}: {}", request.span.to_string(), e.what())};
  }
}

// The hidden states a step computes on: on the span's device, in its compute dtype, copied once
// (asynchronously from a pinned buffer on a GPU).
at::Tensor on_device(const at::Tensor& inputs, const gpu::SpanRunner& first) {
  const auto& compute = first.compute();
  return inputs.to(compute.device, compute.dtype, /*non_blocking=*/true);
}

}  // namespace

Result<ComputeOutput> SpanCompute::run(const ComputeRequest& request) {
  const gpu::ComputeStream::Use on_stream(*stream_);
  auto result = to_error(request, [&]() -> Result<ComputeOutput> {
    switch (request.kind) {
      case core::ComputeKind::inference:
        return run_inference(request);
      case core::ComputeKind::forward:
        return run_forward(request);
      case core::ComputeKind::backward:
        return run_backward(request);
    }
    return Error{ErrorCode::compute_failed, "unknown compute kind"};
  });
  // Out of GPU memory: this session's caches go, so the memory serves the others.
  if (!result.ok() && request.kind == core::ComputeKind::inference &&
      result.error().message.find("out of GPU memory") != std::string::npos) {
    drop_cache(request.cache_id);
    gpu::release_cached_memory();
  }
  return result;
}

std::optional<Error> SpanCompute::prepare_inference(const ComputeRequest& request) {
  const auto chain = runners(request.span);
  for (gpu::SpanRunner* block : chain) {
    if (!block->has_session(request.cache_id)) {
      block->open_session(request.cache_id, request.batch, request.max_length, request.adapter);
    }
    const int64_t cached = block->session_length(request.cache_id);
    if (cached < request.cache_length) {
      return Error{ErrorCode::bad_position,
                   fmt::format("the cache holds {} positions, the step starts at {}", cached, request.cache_length)};
    }
  }
  for (gpu::SpanRunner* block : chain) block->truncate_session(request.cache_id, request.cache_length);
  return std::nullopt;
}

Result<ComputeOutput> SpanCompute::run_inference(const ComputeRequest& request) {
  if (auto error = prepare_inference(request)) return *error;
  const auto chain = runners(request.span);
  const at::Tensor received = tensor_from_activation(request.inputs);
  const at::Tensor prompts = request_prompts(request, received);
  at::Tensor x = on_device(received, *chain.front());
  for (size_t i = 0; i < chain.size(); ++i) x = chain[i]->step(request.cache_id, x, block_prompts(prompts, i));
  return ComputeOutput{activation_from_tensor(x, request.output_compression), std::nullopt};
}

std::vector<Result<ComputeOutput>> SpanCompute::run_batch(const std::vector<ComputeRequest>& requests) {
  const gpu::ComputeStream::Use on_stream(*stream_);
  std::vector<Result<ComputeOutput>> results(requests.size(), Error{ErrorCode::compute_failed, "not run"});
  // Each request is checked as run() would check it; those that pass make up the batch.
  struct Member {
    size_t index;
    at::Tensor inputs;
    at::Tensor prompts;
  };
  std::vector<Member> members;
  for (size_t i = 0; i < requests.size(); ++i) {
    const ComputeRequest& request = requests[i];
    const auto error = to_error(request, [&]() -> Result<ComputeOutput> {
      BOUQUET_CHECK(request.kind == core::ComputeKind::inference && request.span == requests.front().span &&
                        request.adapter == requests.front().adapter,
                    "a batch holds inference steps on the same blocks and adapter");
      if (auto error = prepare_inference(request)) return *error;
      Member m{i, tensor_from_activation(request.inputs), {}};
      m.prompts = request_prompts(request, m.inputs);
      const auto chain = runners(request.span);
      for (size_t b = 0; b < chain.size(); ++b)
        chain[b]->check_step(request.cache_id, m.inputs, block_prompts(m.prompts, b));
      members.push_back(std::move(m));
      return ComputeOutput{};
    });
    if (!error.ok()) results[i] = error.error();
  }
  if (members.empty()) return results;
  const auto chain = runners(requests[members.front().index].span);
  try {
    std::vector<at::Tensor> x;
    for (const Member& m : members) x.push_back(on_device(m.inputs, *chain.front()));
    for (size_t b = 0; b < chain.size(); ++b) {
      std::vector<gpu::SpanRunner::StepPart> parts;
      for (size_t j = 0; j < members.size(); ++j) {
        parts.push_back({requests[members[j].index].cache_id, x[j], block_prompts(members[j].prompts, b)});
      }
      x = chain[b]->step_batch(parts);
    }
    for (size_t j = 0; j < members.size(); ++j) {
      const ComputeRequest& request = requests[members[j].index];
      results[members[j].index] = ComputeOutput{activation_from_tensor(x[j], request.output_compression), std::nullopt};
    }
  } catch (const std::exception&) {
    // Some block failed part-way: each session's cache is trusted up to its step's start only,
    // and run() gives each request its own result (and its own error).
    for (const Member& m : members) results[m.index] = run(requests[m.index]);
  }
  return results;
}

Result<ComputeOutput> SpanCompute::run_forward(const ComputeRequest& request) {
  at::NoGradGuard no_grad;
  at::Tensor x = tensor_from_activation(request.inputs);
  const at::Tensor prompts = request_prompts(request, x);
  const auto chain = runners(request.span);
  for (size_t i = 0; i < chain.size(); ++i) {
    const gpu::ActiveLora lora(chain[i]->adapter(request.adapter));
    x = chain[i]->forward(x, block_prompts(prompts, i));
  }
  return ComputeOutput{activation_from_tensor(x, request.output_compression), std::nullopt};
}

Result<ComputeOutput> SpanCompute::run_backward(const ComputeRequest& request) {
  BOUQUET_CHECK(request.grad_outputs.has_value(), "a backward request without output gradients");
  at::AutoGradMode grad_on(true);
  // A fresh leaf: the received values are not shared with anything that might hold a graph.
  at::Tensor inputs = tensor_from_activation(request.inputs).clone().requires_grad_(true);
  at::Tensor prompts = request_prompts(request, inputs);
  if (prompts.defined()) prompts = prompts.clone().requires_grad_(true);
  at::Tensor x = inputs;
  const auto chain = runners(request.span);
  for (size_t i = 0; i < chain.size(); ++i) {
    const gpu::ActiveLora lora(chain[i]->adapter(request.adapter));  // recorded in the graph
    x = chain[i]->forward(x, block_prompts(prompts, i));
  }
  const at::Tensor grad_outputs = tensor_from_activation(*request.grad_outputs);
  if (grad_outputs.sizes() != x.sizes()) {
    return Error{ErrorCode::bad_request,
                 fmt::format("backward: output gradients {} must have the inputs' shape {}",
                             gpu::format_shape(grad_outputs.sizes().vec()), gpu::format_shape(x.sizes().vec()))};
  }
  x.backward(grad_outputs);
  std::optional<core::Activation> grad_prompts;
  if (prompts.defined()) {
    // A prefix longer than the sequence leaves part of the prompts unused: zero gradient there.
    const at::Tensor g = prompts.grad().defined() ? prompts.grad() : at::zeros_like(prompts);
    grad_prompts = activation_from_tensor(g, request.output_compression);
  }
  return ComputeOutput{activation_from_tensor(inputs.grad(), request.output_compression), std::move(grad_prompts)};
}

void SpanCompute::drop_cache(core::CacheId cache) {
  for (auto& block : blocks_) block->close_session(cache);
}

}  // namespace bouquet::net

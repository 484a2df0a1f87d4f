#include "gpu/span_runner.h"

#include "gpu/checkpoint.h"
#include "gpu/errors.h"
#include "gpu/progress.h"
#include "gpu/safetensors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace bouquet::gpu {
namespace {

// x [batch, tokens, hidden] whose first token sits at absolute position `start`, plus one block's
// prompt [batch or 1, prefix, hidden] on the positions below prefix. Not in place, so autograd sees
// both terms.
at::Tensor add_prompt(const at::Tensor& x, const at::Tensor& prompt, int64_t start) {
  const int64_t prefix = prompt.size(1);
  if (start >= prefix) return x;
  const int64_t n = std::min(prefix - start, x.size(1));
  const at::Tensor head = x.narrow(1, 0, n) + prompt.narrow(1, start, n).to(x.device(), x.scalar_type());
  if (n == x.size(1)) return head;
  return at::cat({head, x.narrow(1, n, x.size(1) - n)}, 1);
}

}  // namespace

SpanRunner::SpanRunner(const SpanRunnerConfig& config)
    : model_config_(load_model_config(config.model_dir)),
      compute_(resolve_compute(config.dtype, config.device, config.quant)) {
  first_block_ = config.first_block;
  end_block_ = config.end_block < 0 ? model_config_.num_layers : config.end_block;
  if (first_block_ < 0 || first_block_ >= end_block_ || end_block_ > model_config_.num_layers) {
    throw InputError(fmt::format("span [{}, {}) is not a non-empty range of the model's {} blocks", first_block_,
                                 end_block_, model_config_.num_layers));
  }
  const Checkpoint checkpoint(config.model_dir);
  std::optional<Progress> progress;
  if (config.show_progress) {
    progress.emplace(ProgressConfig{fmt::format("loading blocks [{}, {})", first_block_, end_block_),
                                    end_block_ - first_block_, "blocks"});
  }
  for (int64_t b = first_block_; b < end_block_; ++b) {
    blocks_.push_back(load_block(model_config_, checkpoint, b, compute_));
    if (progress) progress->update(b - first_block_ + 1, checkpoint.bytes_read());
  }
  checkpoint_bytes_read_ = checkpoint.bytes_read();
  model_dir_ = config.model_dir;
  for (const auto& dir : config.adapters) load_adapter(dir);
}

const LoraAdapter& SpanRunner::load_adapter(const std::filesystem::path& dir) {
  auto adapter = load_lora_adapter(dir, model_dir_, model_config_, first_block_, end_block_, compute_);
  const std::string name = adapter->name();
  if (name.empty() || !adapters_.emplace(name, adapter).second) {
    throw InputError(
        fmt::format("{}: an adapter named '{}' is loaded already (names are folder "
                    "names)",
                    dir.string(), name));
  }
  return *adapter;
}

std::vector<std::string> SpanRunner::adapter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, adapter] : adapters_) names.push_back(name);
  return names;
}

const LoraAdapter* SpanRunner::adapter(const std::string& name) const {
  if (name.empty()) return nullptr;
  const auto it = adapters_.find(name);
  if (it == adapters_.end()) {
    throw UnknownAdapterError(
        fmt::format("unknown adapter '{}': this server holds {}", name,
                    adapters_.empty() ? std::string("none") : fmt::format("{}", fmt::join(adapter_names(), ", "))));
  }
  return it->second.get();
}

SpanRunner::~SpanRunner() = default;

uint64_t SpanRunner::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& block : blocks_) total += block->weight_bytes();
  return total;
}

uint64_t SpanRunner::cache_bytes_per_token() const {
  uint64_t total = 0;
  for (const auto& block : blocks_) {
    const KvCache one = block->make_cache(1, 1);
    total += one.key.numel() * one.key.element_size() + one.value.numel() * one.value.element_size();
  }
  return total;
}

void SpanRunner::open_session(SessionId id, int64_t batch, int64_t max_length, const std::string& adapter_name) {
  const LoraAdapter* lora = adapter(adapter_name);  // throws before anything changes
  if (sessions_.count(id) != 0) throw InputError(fmt::format("session {} is already open", id));
  if (batch <= 0 || max_length <= 0) {
    throw InputError(fmt::format("session {}: batch ({}) and max length ({}) must be positive", id, batch, max_length));
  }
  Session s;
  s.batch = batch;
  s.max_length = max_length;
  s.adapter = lora;
  s.adapter_name = adapter_name;
  for (const auto& block : blocks_) s.caches.push_back(block->make_cache(batch, max_length));
  sessions_.emplace(id, std::move(s));
}

void SpanRunner::close_session(SessionId id) { sessions_.erase(id); }

bool SpanRunner::has_session(SessionId id) const { return sessions_.count(id) != 0; }

SpanRunner::Session& SpanRunner::session(SessionId id) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) throw InputError(fmt::format("no open session {}", id));
  return it->second;
}

const SpanRunner::Session& SpanRunner::session(SessionId id) const {
  return const_cast<SpanRunner*>(this)->session(id);
}

int64_t SpanRunner::session_length(SessionId id) const { return session(id).length; }
int64_t SpanRunner::session_max_length(SessionId id) const { return session(id).max_length; }
const std::string& SpanRunner::session_adapter(SessionId id) const { return session(id).adapter_name; }

void SpanRunner::truncate_session(SessionId id, int64_t length) {
  Session& s = session(id);
  if (length < 0 || length > s.length) {
    throw InputError(fmt::format("session {}: cannot truncate to {} positions, it holds {}", id, length, s.length));
  }
  s.length = length;
}

void SpanRunner::check_hidden(const at::Tensor& hidden, const char* what) const {
  if (!hidden.defined() || hidden.dim() != 3 || !hidden.is_floating_point()) {
    throw InputError(
        fmt::format("{}: hidden states must be a floating [batch, tokens, {}] tensor, "
                    "got {}",
                    what, hidden_size(), hidden.defined() ? format_shape(hidden.sizes().vec()) : "undefined"));
  }
  if (hidden.size(2) != hidden_size()) {
    throw InputError(fmt::format("{}: hidden size is {} but the model's is {}", what, hidden.size(2), hidden_size()));
  }
  if (hidden.size(0) == 0 || hidden.size(1) == 0) {
    throw InputError(fmt::format("{}: empty hidden states {}", what, format_shape(hidden.sizes().vec())));
  }
}

void SpanRunner::check_prompts(const at::Tensor& prompts, const at::Tensor& hidden, const char* what) const {
  const auto blocks = static_cast<int64_t>(blocks_.size());
  if (!prompts.defined() || prompts.dim() != 4 || !prompts.is_floating_point() || prompts.size(0) != blocks ||
      (prompts.size(1) != 1 && prompts.size(1) != hidden.size(0)) || prompts.size(2) == 0 ||
      prompts.size(3) != hidden_size()) {
    throw InputError(fmt::format("{}: deep prompts must be a floating [{} blocks, {} or 1, prefix, {}] tensor, got {}",
                                 what, blocks, hidden.size(0), hidden_size(),
                                 prompts.defined() ? format_shape(prompts.sizes().vec()) : "undefined"));
  }
}

at::Tensor SpanRunner::step(SessionId id, const at::Tensor& hidden) { return step(id, hidden, {}); }

void SpanRunner::check_step(SessionId id, const at::Tensor& hidden, const at::Tensor& prompts) const {
  const std::string what = fmt::format("session {}", id);
  check_hidden(hidden, what.c_str());
  if (prompts.defined()) check_prompts(prompts, hidden, what.c_str());
  const Session& s = session(id);
  if (hidden.size(0) != s.batch) {
    throw InputError(
        fmt::format("{}: batch of {} sequences, but the session was opened for {}", what, hidden.size(0), s.batch));
  }
  const int64_t tokens = hidden.size(1);
  if (s.length + tokens > s.max_length) {
    throw InputError(
        fmt::format("{}: {} new tokens at position {} run past the session's max "
                    "length {}",
                    what, tokens, s.length, s.max_length));
  }
}

at::Tensor SpanRunner::step(SessionId id, const at::Tensor& hidden, const at::Tensor& prompts) {
  check_step(id, hidden, prompts);
  Session& s = session(id);
  at::NoGradGuard no_grad;  // not InferenceMode: outputs stay ordinary tensors callers may reuse
  const ActiveLora lora(s.adapter);
  at::Tensor x = hidden.to(compute_.device, compute_.dtype);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (prompts.defined()) x = add_prompt(x, prompts[static_cast<int64_t>(b)], s.length);
    x = blocks_[b]->forward(x, s.length, &s.caches[b]);
  }
  s.length += hidden.size(1);
  return x.to(hidden.device(), hidden.scalar_type());
}

std::vector<at::Tensor> SpanRunner::step_batch(const std::vector<StepPart>& parts) {
  if (parts.empty()) return {};
  std::vector<Session*> sessions;
  for (const StepPart& part : parts) {
    check_step(part.id, part.hidden, part.prompts);
    Session& s = session(part.id);
    if (std::find(sessions.begin(), sessions.end(), &s) != sessions.end()) {
      throw InputError(fmt::format("session {} has two steps in one batch", part.id));
    }
    if (s.adapter != sessions_.at(parts.front().id).adapter) {
      throw InputError(fmt::format("session {} applies adapter '{}', session {} '{}': one batch applies one adapter",
                                   part.id, s.adapter_name, parts.front().id,
                                   sessions_.at(parts.front().id).adapter_name));
    }
    sessions.push_back(&s);
  }
  at::NoGradGuard no_grad;
  const ActiveLora lora(sessions.front()->adapter);
  std::vector<at::Tensor> x;
  for (const StepPart& part : parts) x.push_back(part.hidden.to(compute_.device, compute_.dtype));
  for (size_t b = 0; b < blocks_.size(); ++b) {
    std::vector<BatchPart> batch;
    for (size_t j = 0; j < parts.size(); ++j) {
      Session& s = *sessions[j];
      if (parts[j].prompts.defined()) x[j] = add_prompt(x[j], parts[j].prompts[static_cast<int64_t>(b)], s.length);
      batch.push_back(BatchPart{x[j], s.length, &s.caches[b]});
    }
    x = blocks_[b]->forward_batch(batch);
  }
  for (size_t j = 0; j < parts.size(); ++j) {
    sessions[j]->length += parts[j].hidden.size(1);
    x[j] = x[j].to(parts[j].hidden.device(), parts[j].hidden.scalar_type());
  }
  return x;
}

at::Tensor SpanRunner::forward(const at::Tensor& hidden) const { return forward(hidden, {}); }

at::Tensor SpanRunner::forward(const at::Tensor& hidden, const at::Tensor& prompts) const {
  check_hidden(hidden, "forward");
  if (prompts.defined()) check_prompts(prompts, hidden, "forward");
  at::Tensor x = hidden.to(compute_.device, compute_.dtype);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (prompts.defined()) x = add_prompt(x, prompts[static_cast<int64_t>(b)], 0);
    x = blocks_[b]->forward(x, 0, nullptr);
  }
  return x.to(hidden.device(), hidden.scalar_type());
}

at::Tensor SpanRunner::backward(const at::Tensor& hidden, const at::Tensor& grad_outputs) const {
  return backward(hidden, grad_outputs, {}).hidden;
}

SpanRunner::Gradients SpanRunner::backward(const at::Tensor& hidden, const at::Tensor& grad_outputs,
                                           const at::Tensor& prompts) const {
  check_hidden(hidden, "backward");
  if (prompts.defined()) check_prompts(prompts, hidden, "backward");
  if (!grad_outputs.defined() || grad_outputs.sizes() != hidden.sizes()) {
    throw InputError(fmt::format("backward: output gradients {} must have the hidden states' shape {}",
                                 grad_outputs.defined() ? format_shape(grad_outputs.sizes().vec()) : "undefined",
                                 format_shape(hidden.sizes().vec())));
  }
  at::AutoGradMode grad_mode(true);
  const at::Tensor x = hidden.detach().to(compute_.device, compute_.dtype).requires_grad_(true);
  // A fresh leaf in the compute dtype; the caller's tensor never joins this graph.
  const at::Tensor p =
      prompts.defined() ? prompts.detach().to(compute_.device, compute_.dtype).requires_grad_(true) : at::Tensor();
  at::Tensor y = x;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (p.defined()) y = add_prompt(y, p[static_cast<int64_t>(b)], 0);
    y = blocks_[b]->forward(y, 0, nullptr);
  }
  y.backward(grad_outputs.to(y.device(), y.scalar_type()));
  Gradients out;
  out.hidden = x.grad().to(hidden.device(), hidden.scalar_type());
  if (p.defined()) {
    // A prompt past the sequence's length gets no gradient: zeros, not undefined.
    const at::Tensor g = p.grad().defined() ? p.grad() : at::zeros_like(p);
    out.prompts = g.to(prompts.device(), prompts.scalar_type());
  }
  return out;
}

}  // namespace bouquet::gpu

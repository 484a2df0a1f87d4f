#include "gpu/prompt_tuning.h"

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace bouquet::gpu {

at::Tensor LocalPassChain::forward(const at::Tensor& hidden, const at::Tensor& prompts) {
  hidden_ = hidden.detach();
  prompts_ = prompts.defined() ? prompts.detach() : at::Tensor();
  at::NoGradGuard no_grad;
  return blocks_.forward(hidden_, prompts_);
}

SpanRunner::Gradients LocalPassChain::backward(const at::Tensor& grad_outputs) {
  if (!hidden_.defined()) throw InputError("backward before any forward");
  return blocks_.backward(hidden_, grad_outputs, prompts_);
}

struct PromptTuner::Optimizer {
  torch::optim::Adam adam;
};

struct PromptTuner::Pass {
  at::Tensor loss;    // scalar, with a graph to the client's side when with_grad
  at::Tensor logits;  // [batch, tokens, vocab] past the prefix, detached
};

PromptTuner::PromptTuner(const ClientHead& head, TuningMode mode, int64_t pre_seq_len, uint64_t seed, double lr)
    : head_(head), mode_(mode), pre_seq_len_(pre_seq_len) {
  if (pre_seq_len <= 0) throw InputError(fmt::format("--pre-seq-len must be positive, got {}", pre_seq_len));
  if (!(lr > 0)) throw InputError(fmt::format("--lr must be positive, got {}", lr));
  const ModelConfig& model = head.model_config();
  // Start from real token embeddings (drawn from the seed): the blocks have seen vectors like
  // these, which random normals at the embedding's scale are not.
  core::Rng rng(seed);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < pre_seq_len; ++i) ids.push_back(static_cast<int64_t>(rng.below(model.vocab_size)));
  const at::Tensor start = head.embed(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);
  input_prompts_ = start.to(at::kCPU, at::kFloat).clone().requires_grad_(true);
  std::vector<torch::Tensor> parameters{input_prompts_};
  if (mode == TuningMode::deep_ptune) {
    deep_prompts_ = at::zeros({model.num_layers, pre_seq_len, model.hidden_size}, at::kFloat).requires_grad_(true);
    parameters.push_back(deep_prompts_);
  }
  optimizer_.reset(new Optimizer{torch::optim::Adam(parameters, torch::optim::AdamOptions(lr))});
}

PromptTuner::~PromptTuner() = default;

PromptTuner::Pass PromptTuner::run(PassChain& chain, const TrainingBatch& batch, bool with_grad) {
  const int64_t rows = batch.ids.size(0);
  const int64_t tokens = batch.ids.size(1);
  at::AutoGradMode grad_mode(with_grad);
  const at::Tensor embeds = head_.embed(batch.ids).to(at::kCPU, at::kFloat);
  const at::Tensor x =
      at::cat({input_prompts_.unsqueeze(0).expand({rows, pre_seq_len_, input_prompts_.size(1)}), embeds}, 1);
  const at::Tensor deep = deep_prompts_.defined() ? deep_prompts_.detach().unsqueeze(1) : at::Tensor();
  const at::Tensor outputs = chain.forward(x.detach(), deep).to(at::kCPU, at::kFloat);
  // The chain's outputs as a leaf: the head's graph ends there and chain.backward() goes on.
  const at::Tensor leaf = outputs.detach().requires_grad_(with_grad);
  const at::Tensor logits = head_.logits_with_grad(leaf.narrow(1, pre_seq_len_, tokens)).to(at::kFloat);
  const at::Tensor loss = at::cross_entropy_loss(logits.reshape({rows * tokens, logits.size(2)}),
                                                 batch.targets.reshape({-1}), {}, at::Reduction::Mean, kIgnoreTarget);
  if (with_grad) {
    loss.backward();
    const SpanRunner::Gradients g = chain.backward(leaf.grad());
    x.backward(g.hidden.to(x.scalar_type()));
    if (deep_prompts_.defined()) {
      // [layers, 1, prefix, hidden] -> the parameter's shape.
      deep_prompts_.mutable_grad() = g.prompts.to(at::kFloat).reshape(deep_prompts_.sizes()).clone();
    }
  }
  return {loss.detach(), logits.detach()};
}

double PromptTuner::loss_and_gradients(PassChain& chain, const TrainingBatch& batch) {
  optimizer_->adam.zero_grad();
  return run(chain, batch, true).loss.item<double>();
}

double PromptTuner::train_step(PassChain& chain, const TrainingBatch& batch) {
  const double loss = loss_and_gradients(chain, batch);
  optimizer_->adam.step();
  return loss;
}

Evaluation PromptTuner::evaluate(PassChain& chain, const TrainingBatch& batch) {
  const Pass pass = run(chain, batch, false);
  const at::Tensor predicted = pass.logits.argmax(2);
  const at::Tensor counted = batch.targets != kIgnoreTarget;
  const at::Tensor wrong = (predicted != batch.targets).logical_and(counted).any(1);
  Evaluation out;
  out.loss = pass.loss.item<double>();
  out.total = batch.ids.size(0);
  out.exact = out.total - wrong.sum().item<int64_t>();
  return out;
}

TunedPrompts PromptTuner::prompts(const std::string& model_fingerprint) const {
  TunedPrompts out;
  out.mode = mode_;
  out.pre_seq_len = pre_seq_len_;
  out.model_fingerprint = model_fingerprint;
  out.input_prompts = input_prompts_.detach().clone();
  if (deep_prompts_.defined()) out.deep_prompts = deep_prompts_.detach().clone();
  return out;
}

void check_finetune_config(const FinetuneConfig& config) {
  if (!parse_tuning_mode(config.mode)) {
    throw InputError(fmt::format("--mode '{}' is not one of ptune, deep_ptune", config.mode));
  }
  // More trainable positions than any context holds would only size an allocation.
  if (config.pre_seq_len <= 0 || config.pre_seq_len > 65536) {
    throw InputError(fmt::format("--pre-seq-len must be in [1, 65536], got {}", config.pre_seq_len));
  }
  if (config.steps < 0) throw InputError("--steps must be >= 0");
  if (!(config.lr > 0 && std::isfinite(config.lr)))
    throw InputError(fmt::format("--lr must be a positive finite number, got {}", config.lr));
  if (config.batch_size < 0) throw InputError("--batch-size must be >= 0 (0: every example each step)");
  if (config.data.empty()) throw InputError("--data FILE.jsonl is required");
  if (config.threads < 0) throw InputError("--threads must be >= 0");
}

FinetuneReport finetune(const FinetuneConfig& config, const ClientHead& head, const Tokenizer& tokenizer,
                        PassChain& chain, const std::string& model_fingerprint,
                        const std::function<void(int64_t, int64_t, double)>& on_step) {
  check_finetune_config(config);
  const auto examples = tokenize_examples(tokenizer, load_finetune_data(config.data));
  PromptTuner tuner(head, *parse_tuning_mode(config.mode), config.pre_seq_len, config.seed, config.lr);
  std::vector<size_t> all(examples.size());
  std::iota(all.begin(), all.end(), size_t{0});
  const TrainingBatch everything = make_batch(examples, all, 0);

  FinetuneReport report;
  report.examples = static_cast<int64_t>(examples.size());
  report.before = tuner.evaluate(chain, everything);
  // Minibatches walk seeded shuffles of the data, one epoch after another.
  core::Rng rng = core::Rng(config.seed).derive(1);
  std::vector<size_t> order;
  size_t at = 0;
  const size_t per_step =
      config.batch_size == 0 ? examples.size() : std::min(examples.size(), static_cast<size_t>(config.batch_size));
  for (int64_t step = 1; step <= config.steps; ++step) {
    std::vector<size_t> rows;
    if (per_step == examples.size()) {
      rows = all;
    } else {
      while (rows.size() < per_step) {
        if (at == order.size()) {
          order = all;
          for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
          at = 0;
        }
        rows.push_back(order[at++]);
      }
    }
    const TrainingBatch batch = rows == all ? everything : make_batch(examples, rows, 0);
    const auto start = std::chrono::steady_clock::now();
    const double loss = tuner.train_step(chain, batch);
    report.step_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    report.step_batch.push_back(batch.ids.size(0));
    report.step_positions.push_back(config.pre_seq_len + batch.ids.size(1));
    report.losses.push_back(loss);
    if (on_step) on_step(step, config.steps, loss);
  }
  report.after = tuner.evaluate(chain, everything);
  if (!config.out.empty()) save_prompts(config.out, tuner.prompts(model_fingerprint));
  return report;
}

}  // namespace bouquet::gpu

// Prompt tuning and deep prompt tuning on the client. The blocks stay frozen wherever
// they run: a PassChain runs them (all in this process, or through the swarm in
// net/client/remote_chain.h) and returns gradients w.r.t. its inputs and deep prompts; the client owns
// the trainable prompts, the head's loss and the Adam optimizer.
//
// Promises:
// - ptune: pre_seq_len trainable embeddings are prepended to every sequence's embeddings;
//   deep_ptune: the same plus a [num_layers, pre_seq_len, hidden] prefix, zero at the start, that
//   the blocks add to their first pre_seq_len positions (gpu/span_runner.h). Input prompts start
//   as the embeddings of pre_seq_len vocabulary tokens drawn from the seed.
// - The loss is the mean cross-entropy over completion tokens only (prompt_data.h); exact match
//   counts the examples whose every completion token is the argmax at the position before it,
//   which is exactly when greedy decoding from the prompt reproduces the completion.
// - Same seed, data and chain results: the same prompts, bit for bit.
#pragma once

#include "gpu/prompt_data.h"
#include "gpu/prompt_file.h"
#include "gpu/span_runner.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bouquet::gpu {

class ClientHead;

// Every block of the model, for one pass at a time.
class PassChain {
 public:
  virtual ~PassChain() = default;
  // hidden [batch, tokens, hidden], deep prompts [num_layers, batch or 1, prefix, hidden] or
  // undefined -> the last block's outputs (no autograd). Keeps what backward() needs.
  virtual at::Tensor forward(const at::Tensor& hidden, const at::Tensor& prompts) = 0;
  // Gradients w.r.t. the last forward's hidden states and prompts, given its outputs' gradient.
  virtual SpanRunner::Gradients backward(const at::Tensor& grad_outputs) = 0;
};

// The blocks in this process (`finetune --local`, and the reference in tests).
class LocalPassChain final : public PassChain {
 public:
  explicit LocalPassChain(const SpanRunner& blocks) : blocks_(blocks) {}
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& prompts) override;
  SpanRunner::Gradients backward(const at::Tensor& grad_outputs) override;

 private:
  const SpanRunner& blocks_;
  at::Tensor hidden_;
  at::Tensor prompts_;
};

struct Evaluation {
  double loss = 0;
  int64_t exact = 0;  // examples greedy decoding gets exactly right
  int64_t total = 0;
  double accuracy() const { return total > 0 ? static_cast<double>(exact) / static_cast<double>(total) : 0.0; }
};

class PromptTuner {
 public:
  PromptTuner(const ClientHead& head, TuningMode mode, int64_t pre_seq_len, uint64_t seed, double lr);
  ~PromptTuner();

  // The loss of `batch`, leaving its gradient in the prompts' .grad() (replacing the last one).
  double loss_and_gradients(PassChain& chain, const TrainingBatch& batch);
  // loss_and_gradients, then one Adam step; returns the loss before the step.
  double train_step(PassChain& chain, const TrainingBatch& batch);
  Evaluation evaluate(PassChain& chain, const TrainingBatch& batch);

  TuningMode mode() const { return mode_; }
  int64_t pre_seq_len() const { return pre_seq_len_; }
  const at::Tensor& input_prompts() const { return input_prompts_; }  // [prefix, hidden]
  const at::Tensor& deep_prompts() const { return deep_prompts_; }    // [layers, prefix, hidden] or undefined
  TunedPrompts prompts(const std::string& model_fingerprint) const;

 private:
  struct Pass;
  Pass run(PassChain& chain, const TrainingBatch& batch, bool with_grad);

  const ClientHead& head_;
  TuningMode mode_;
  int64_t pre_seq_len_;
  at::Tensor input_prompts_;
  at::Tensor deep_prompts_;
  struct Optimizer;
  std::unique_ptr<Optimizer> optimizer_;
};

// `bouquet finetune`'s flags (field names = flag names).
// Where the blocks run when not --local is the network's (net::SwarmGenerateOptions).
struct FinetuneConfig {
  bool local = false;  // every block in this process
  std::string model;
  std::string mode = "ptune";
  int64_t pre_seq_len = 8;
  std::string data;  // JSON lines of {"prompt", "completion"}
  int64_t steps = 100;
  double lr = 0.01;
  std::string out;  // PROMPTS.safetensors
  uint64_t seed = 0;
  int64_t batch_size = 0;  // examples per step; 0: all of them
  int threads = 0;
  bool quiet = false;  // no per-step lines
  bool json = false;   // print the report as one JSON object (finetune_json) instead of a line
};

struct FinetuneReport {
  Evaluation before;           // the untuned prompts on the whole data set
  Evaluation after;            // the tuned prompts on the whole data set
  std::vector<double> losses;  // per step, before its update
  // Per step: seconds of its forward pass, loss, backward pass and update (the evaluations before
  // and after are not steps), and the shape of the pass the blocks saw: sequences x positions
  // (the prefix included).
  std::vector<double> step_s;
  std::vector<int64_t> step_batch;
  std::vector<int64_t> step_positions;
  int64_t examples = 0;
};

// Checks the flags that need no model (InputError naming the flag).
void check_finetune_config(const FinetuneConfig& config);

// Loads the data, trains config.steps steps through `chain`, writes config.out (when not empty)
// with `model_fingerprint`; on_step(step, steps, loss) after each step.
FinetuneReport finetune(const FinetuneConfig& config, const ClientHead& head, const Tokenizer& tokenizer,
                        PassChain& chain, const std::string& model_fingerprint,
                        const std::function<void(int64_t, int64_t, double)>& on_step = {});

}  // namespace bouquet::gpu

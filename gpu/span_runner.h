// Runs a contiguous span of a model's blocks, [first_block, end_block), on hidden states — what a
// Bouquet server computes for its clients.
//
// Promises:
// - Construction reads only config.json and the span's tensors (checkpoint_bytes_read() shows it).
// - Inference keeps one KV cache per session, keyed by the caller's id: open_session() reserves
//   room for `max_length` positions of `batch` sequences, step() appends the new tokens' keys and
//   values and returns the span's outputs; token i of a step sits at absolute position
//   session_length() + i, so a prefill of many tokens and single-token decode steps mix freely.
//   truncate_session() forgets positions from a point on (to replay or roll back).
// - forward() runs without a cache and with autograd on: gradients flow to the input hidden
//   states; the weights never require gradients. backward() returns those input gradients.
// - Inputs may be any floating dtype on any device; outputs come back in the input's dtype and
//   device. Bad input (wrong rank or hidden size, an unknown or duplicate session, a step past the
//   session's max length, a batch that does not match the session) throws InputError and leaves
//   the session as it was.
// - Deep prompts (deep prompt tuning), optional everywhere: a [span_blocks, batch or 1,
//   pre_seq_len, hidden] tensor whose slice i is added to the first pre_seq_len positions
//   (absolute positions, so a decode step past the prefix gets nothing) of block i's input, as the
//   reference system does. backward() then also returns their gradient. Wrong shapes: InputError.
// - LoRA adapters (gpu/lora.h) sit next to the shared base weights, which they never change. A
//   session applies the adapter named at open_session() on every step; forward() and backward()
//   apply the one an ActiveLora guard on the calling thread names (ActiveLora(adapter(name))).
//   An unknown name throws UnknownAdapterError (an InputError) and changes nothing.
// - Not thread-safe: one caller (a server's compute queue) drives it.
#pragma once

#include "gpu/compute_options.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/lora.h"
#include "gpu/model_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bouquet::gpu {

struct SpanRunnerConfig {
  std::filesystem::path model_dir;
  int64_t first_block = 0;
  int64_t end_block = -1;  // -1: through the model's last block
  std::string dtype = "f32";
  std::string device = "auto";
  std::string quant = "none";                        // none | int8: how block weights are held (gpu/linear.h)
  std::vector<std::filesystem::path> adapters = {};  // LoRA adapter folders (PEFT layout) to load
  bool show_progress = false;                        // loading shows progress on stderr (gpu/progress.h)
};

using SessionId = uint64_t;

// A request named a LoRA adapter this span has not loaded.
class UnknownAdapterError : public InputError {
 public:
  using InputError::InputError;
};

class SpanRunner {
 public:
  explicit SpanRunner(const SpanRunnerConfig& config);
  ~SpanRunner();
  SpanRunner(const SpanRunner&) = delete;
  SpanRunner& operator=(const SpanRunner&) = delete;

  const ModelConfig& model_config() const { return model_config_; }
  const ComputeOptions& compute() const { return compute_; }
  int64_t first_block() const { return first_block_; }
  int64_t end_block() const { return end_block_; }
  int64_t hidden_size() const { return model_config_.hidden_size; }
  // Tensor bytes this runner read from the checkpoint while loading.
  uint64_t checkpoint_bytes_read() const { return checkpoint_bytes_read_; }
  // Bytes of the span's weights in memory.
  uint64_t weight_bytes() const;
  // Bytes a session's cache takes per position of one sequence (to admit sessions by memory).
  uint64_t cache_bytes_per_token() const;

  // Loads the adapter in `dir` for this span's blocks; its name is the folder's name (InputError
  // when one of that name is loaded already, ModelFileError naming the file when it does not fit).
  const LoraAdapter& load_adapter(const std::filesystem::path& dir);
  std::vector<std::string> adapter_names() const;  // sorted
  bool has_adapter(const std::string& name) const { return adapters_.count(name) != 0; }
  // nullptr for "" (the base model); UnknownAdapterError for a name not loaded.
  const LoraAdapter* adapter(const std::string& name) const;

  // `adapter`: the LoRA adapter every step of this session applies ("" = none).
  void open_session(SessionId id, int64_t batch, int64_t max_length, const std::string& adapter = "");
  const std::string& session_adapter(SessionId id) const;
  void close_session(SessionId id);  // unknown ids are ignored: closing is idempotent
  bool has_session(SessionId id) const;
  int64_t session_length(SessionId id) const;
  int64_t session_max_length(SessionId id) const;
  void truncate_session(SessionId id, int64_t length);
  size_t session_count() const { return sessions_.size(); }

  // [batch, new_tokens, hidden] -> [batch, new_tokens, hidden], appending to the session's cache.
  at::Tensor step(SessionId id, const at::Tensor& hidden);
  // The same with deep prompts (undefined: none), added at the step's absolute positions.
  at::Tensor step(SessionId id, const at::Tensor& hidden, const at::Tensor& prompts);
  // One session's step within step_batch().
  struct StepPart {
    SessionId id = 0;
    at::Tensor hidden;   // [batch, new_tokens, hidden]
    at::Tensor prompts;  // deep prompts, or undefined
  };
  // Several sessions' steps in one pass over the weights (Block::forward_batch): each output
  // equals what step() on that session alone gives, within floating-point rounding. Every part
  // is checked first, as step() checks it; a bad part, two parts of one session, or sessions
  // applying different adapters throw InputError and change nothing.
  std::vector<at::Tensor> step_batch(const std::vector<StepPart>& parts);
  // The checks step() makes before computing, without computing (InputError naming the session).
  void check_step(SessionId id, const at::Tensor& hidden, const at::Tensor& prompts) const;
  // [batch, tokens, hidden] at positions 0.. -> outputs, with autograd; no cache involved.
  at::Tensor forward(const at::Tensor& hidden) const;
  // The same with deep prompts (undefined: none); gradients also flow to `prompts`.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& prompts) const;
  // The gradient w.r.t. `hidden` of sum(forward(hidden) * grad_outputs), recomputing the forward
  // so nothing is kept between a client's forward and backward calls (what a server's backward
  // pass for fine-tuning needs). Same shape, dtype and device as `hidden`.
  at::Tensor backward(const at::Tensor& hidden, const at::Tensor& grad_outputs) const;
  struct Gradients {
    at::Tensor hidden;   // like `hidden`
    at::Tensor prompts;  // like `prompts`; undefined when no prompts were given
  };
  // The same with deep prompts: gradients w.r.t. the inputs and the prompts.
  Gradients backward(const at::Tensor& hidden, const at::Tensor& grad_outputs, const at::Tensor& prompts) const;
  // Throws InputError unless `prompts` is a floating [blocks, batch or 1, prefix, hidden] tensor
  // for `hidden` ([batch, tokens, hidden]) and this span's number of blocks.
  void check_prompts(const at::Tensor& prompts, const at::Tensor& hidden, const char* what) const;

 private:
  struct Session {
    int64_t batch = 0;
    int64_t max_length = 0;
    int64_t length = 0;
    std::vector<KvCache> caches;  // one per block of the span
    const LoraAdapter* adapter = nullptr;
    std::string adapter_name;
  };

  Session& session(SessionId id);
  const Session& session(SessionId id) const;
  void check_hidden(const at::Tensor& hidden, const char* what) const;

  ModelConfig model_config_;
  ComputeOptions compute_;
  int64_t first_block_ = 0;
  int64_t end_block_ = 0;
  uint64_t checkpoint_bytes_read_ = 0;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::map<SessionId, Session> sessions_;
  std::filesystem::path model_dir_;
  std::map<std::string, std::shared_ptr<const LoraAdapter>> adapters_;
};

}  // namespace bouquet::gpu

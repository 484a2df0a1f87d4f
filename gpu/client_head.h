// The client's share of a model: token embeddings, the final norm and the LM head (the embedding
// matrix itself when tie_word_embeddings). It reads only those tensors from the checkpoint — never
// a block's — so a client can drive a model whose blocks it could not hold.
#pragma once

#include "gpu/compute_options.h"
#include "gpu/family.h"
#include "gpu/model_config.h"
#include "tokenizer/tokenizer.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace bouquet::gpu {

struct ClientHeadConfig {
  std::filesystem::path model_dir;
  std::string dtype = "f32";
  std::string device = "auto";
  // none | int8 | nf4 | nf4-nodq, as the blocks' --quant: each but none also holds a Llama LM
  // head's matrix in per-row int8 (on a small model with a large vocabulary, such as SmolLM2's
  // tied 49152 x 576 head, that matrix is ~half of the bytes a token reads; 4-bit blocks keep an
  // 8-bit head, as llama.cpp's 4-bit files keep a 6-bit one).
  // The embedding lookup always reads the unquantized matrix.
  std::string quant = "none";
};

class ClientHead {
 public:
  explicit ClientHead(const ClientHeadConfig& config);
  ~ClientHead();

  const ModelConfig& model_config() const { return model_config_; }
  const ComputeOptions& compute() const { return compute_; }
  uint64_t checkpoint_bytes_read() const { return checkpoint_bytes_read_; }
  const std::vector<std::string>& tensors_read() const { return tensors_read_; }

  // [batch, tokens] integer ids -> [batch, tokens, hidden] in the compute dtype and device.
  // Throws InputError for an id outside the vocabulary.
  at::Tensor embed(const at::Tensor& ids) const;
  // One sequence: [1, ids.size(), hidden].
  at::Tensor embed(const std::vector<TokenId>& ids) const;
  // [batch, tokens, hidden] outputs of the last block -> [batch, tokens, vocab] f32 logits.
  at::Tensor logits(const at::Tensor& hidden) const;
  // The same with autograd on, so a loss's gradient flows back to `hidden` (prompt tuning); the
  // head's own weights never require gradients.
  at::Tensor logits_with_grad(const at::Tensor& hidden) const;
  // Logits of sequence 0's last position, on the CPU, for a Sampler.
  std::vector<float> last_logits(const at::Tensor& hidden) const;

 private:
  ModelConfig model_config_;
  ComputeOptions compute_;
  std::unique_ptr<Head> head_;
  uint64_t checkpoint_bytes_read_ = 0;
  std::vector<std::string> tensors_read_;
};

}  // namespace bouquet::gpu

// Small random-weight models in the exact Hugging Face layout, for tests and demos: config.json,
// generation_config.json, weights (one model.safetensors, or shards with
// model.safetensors.index.json) and the tokenizer files. Weights are drawn from core::Rng with
// each family's TensorSpec init (per-tensor sub-streams of `seed`), so the same seed gives the same
// underlying f32 weights in every dtype and every sharding.
#pragma once

#include "gpu/model_config.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace bouquet::gpu {

struct TinyModelConfig {
  std::string family = "llama";
  std::filesystem::path out;
  int64_t layers = 8;
  int64_t hidden = 64;
  int64_t intermediate = 176;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t vocab = 512;
  std::string dtype = "f32";  // f32 | f16 | bf16: the stored dtype
  int64_t shards = 1;
  bool tie_embeddings = false;
  std::string rope_scaling;  // "" or "llama3"
  // bloom only: "" or "transformer.", the prefix BloomForCausalLM's own saves put on the base
  // model's tensors (BigScience's published checkpoints have none).
  std::string tensor_prefix;
  uint64_t seed = 0;
};

// The ModelConfig a tiny model of `config` has (InputError for inconsistent sizes). A bloom model
// takes BLOOM's fixed shapes: MLP width 4 x hidden, one key/value head per head, and an LM head
// tied to the embeddings, whatever `intermediate`, `kv_heads` and `tie_embeddings` say.
ModelConfig tiny_model_config(const TinyModelConfig& config);
// Writes config.json, generation_config.json and the weights; no tokenizer (fast, for tests that
// feed token ids). The tensor prefix changes names only: the weights stay those of the same seed.
ModelConfig write_tiny_checkpoint(const TinyModelConfig& config);
// The whole folder: the checkpoint plus a tokenizer of exactly `vocab` ids trained on the corpus
// the repository ships, tokenizer_config.json and special_tokens_map.json. Llama gets a
// SentencePiece tokenizer.model (add_bos_token true); bloom a byte-level BPE tokenizer.json laid
// out as BLOOM's (<unk> <s> </s> <pad> = 0..3, no BOS added; needs vocab > 260).
ModelConfig make_tiny_model(const TinyModelConfig& config);

}  // namespace bouquet::gpu

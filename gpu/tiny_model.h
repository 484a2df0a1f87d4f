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
  std::string rope_scaling;   // "" or "llama3"
  uint64_t seed = 0;
};

// The ModelConfig a tiny model of `config` has (InputError for inconsistent sizes).
ModelConfig tiny_model_config(const TinyModelConfig& config);
// Writes config.json, generation_config.json and the weights; no tokenizer (fast, for tests that
// feed token ids).
ModelConfig write_tiny_checkpoint(const TinyModelConfig& config);
// The whole folder: the checkpoint plus a SentencePiece tokenizer of exactly `vocab` pieces
// trained on the corpus the repository ships, tokenizer_config.json (add_bos_token true) and
// special_tokens_map.json.
ModelConfig make_tiny_model(const TinyModelConfig& config);

}  // namespace bouquet::gpu

// Trained prompts on disk: a safetensors file whose metadata says which model they were
// trained for (the model fingerprint, gpu/fingerprint.h), the tuning mode and pre_seq_len.
//
// Promises: load_prompts() refuses, with an InputError naming the file and both fingerprints,
// prompts made for another model (a file tagged with the model's version-1 fingerprint, from
// before 2026-12-07, is accepted when `legacy_fingerprint` gives that fingerprint: it is asked
// only then, since it re-reads the weights); a file without Bouquet's metadata, or whose tensors do not fit
// the model (hidden size, block count, pre_seq_len), is a ModelFileError naming the file.
#pragma once

#include "gpu/model_config.h"

#include <ATen/core/Tensor.h>

#include <functional>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace bouquet::gpu {

// ptune: trainable embeddings prepended to the input. deep_ptune: those plus a trainable prefix
// per block, added to the first pre_seq_len hidden positions before each block.
enum class TuningMode { ptune, deep_ptune };

std::optional<TuningMode> parse_tuning_mode(std::string_view name);
std::string_view to_string(TuningMode mode);

struct TunedPrompts {
  TuningMode mode = TuningMode::ptune;
  int64_t pre_seq_len = 0;
  std::string model_fingerprint;
  at::Tensor input_prompts;  // [pre_seq_len, hidden] f32
  at::Tensor deep_prompts;   // [num_layers, pre_seq_len, hidden] f32; undefined for ptune
};

void save_prompts(const std::filesystem::path& path, const TunedPrompts& prompts);
TunedPrompts load_prompts(const std::filesystem::path& path, const std::string& expected_fingerprint,
                          const ModelConfig& model, const std::function<std::string()>& legacy_fingerprint = nullptr);

}  // namespace bouquet::gpu

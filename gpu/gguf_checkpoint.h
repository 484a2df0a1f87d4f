// A GGUF file (llama.cpp's checkpoint) seen as a Hugging Face checkpoint, so that `--model
// FILE.gguf` works wherever a model folder does.
//
// GgufCheckpoint promises: the hyper-parameters come from the file's metadata, written out as the
// config.json text a Hugging Face folder of the same model would carry (config_json(), parsed by
// the same family reader, so every bound a config.json has applies); tensors are named and shaped
// as in that folder (llama.cpp's "blk.N.attn_q.weight" is "model.layers.N.self_attn.q_proj.weight",
// dims reversed to row-major) and read dequantized to f32, with the rotary row order llama.cpp's
// converter gives Q and K undone, so the engine computes what it computes on the original folder;
// only the tensors asked for are read, and their stored bytes counted. Architectures: llama.
#pragma once

#include "gpu/gguf.h"
#include "gpu/model_config.h"
#include "gpu/safetensors.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bouquet::gpu {

class GgufCheckpoint {
 public:
  // Throws ModelFileError naming the file (and the key or tensor) for a corrupt file, an
  // architecture Bouquet does not serve or metadata it cannot turn into a config.
  explicit GgufCheckpoint(std::filesystem::path path);

  const GgufFile& file() const { return file_; }
  const ModelConfig& config() const { return config_; }
  // The config.json text of this model (its hyper-parameters in Hugging Face's names).
  const std::string& config_json() const { return config_json_; }

  // Hugging Face name -> info with the row-major shape and dtype F32 (what read() returns);
  // nullopt when the file has no such tensor.
  std::optional<TensorInfo> info(const std::string& hf_name) const;
  at::Tensor read(const std::string& hf_name) const;
  // Every tensor of the file under its Hugging Face name (those Bouquet has no name for, such as
  // rope_freqs, are left out).
  std::vector<std::string> tensor_names() const;
  // The GGUF name of a Hugging Face tensor name ("" when there is none).
  std::string gguf_name(const std::string& hf_name) const;

 private:
  GgufFile file_;
  std::string config_json_;
  ModelConfig config_;
};

// The ModelConfig of a GGUF file (reads its header and metadata only).
ModelConfig load_gguf_model_config(const std::filesystem::path& path);

}  // namespace bouquet::gpu

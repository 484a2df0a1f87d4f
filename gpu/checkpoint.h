// Where a family's loader gets tensors from: a Hugging Face model folder on disk (Checkpoint), or
// any other TensorSource (random weights for a benchmark).
//
// Checkpoint promises: it opens `model.safetensors`, or the shards listed in
// `model.safetensors.index.json`'s weight_map, lazily — a shard's header is read the first time
// one of its tensors is asked for, so loading a span touches only the shards that hold it; tensor
// bytes are read only when read() is called, and counted. A path to a `.gguf` file opens it
// through GgufCheckpoint instead (Hugging Face names and layout, dequantized to f32).
#pragma once

#include "gpu/safetensors.h"

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace bouquet::gpu {

class GgufCheckpoint;

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Header information of `name`; nullopt when the source has no such tensor.
  virtual std::optional<TensorInfo> info(const std::string& name) const = 0;
  // The tensor as stored (CPU, stored dtype). Throws ModelFileError naming the file and tensor
  // when it is missing or unreadable.
  virtual at::Tensor read(const std::string& name) const = 0;
  // Which file holds (or should hold) `name`, for error messages.
  virtual std::string where(const std::string& name) const = 0;
};

class Checkpoint : public TensorSource {
 public:
  explicit Checkpoint(std::filesystem::path model_dir);
  ~Checkpoint() override;

  std::optional<TensorInfo> info(const std::string& name) const override;
  at::Tensor read(const std::string& name) const override;
  std::string where(const std::string& name) const override;

  const std::filesystem::path& model_dir() const { return model_dir_; }
  bool sharded() const { return !weight_map_.empty(); }
  // The GGUF file behind this checkpoint, or nullptr for a Hugging Face folder.
  const GgufCheckpoint* gguf() const { return gguf_.get(); }
  // Every tensor name in the checkpoint (opens all shards' headers).
  std::vector<std::string> tensor_names() const;
  // Tensor data bytes read so far, over all shards.
  uint64_t bytes_read() const;
  // Names of the tensors read so far, in the order they were read.
  std::vector<std::string> tensors_read() const;

 private:
  const SafetensorsFile& shard(const std::string& file) const;
  std::string shard_of(const std::string& name) const;

  std::filesystem::path model_dir_;
  std::filesystem::path index_path_;
  std::map<std::string, std::string> weight_map_;  // tensor -> shard file name; empty: unsharded
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;
  mutable std::vector<std::string> tensors_read_;
  std::unique_ptr<GgufCheckpoint> gguf_;
};

}  // namespace bouquet::gpu

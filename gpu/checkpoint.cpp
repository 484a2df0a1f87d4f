#include "gpu/checkpoint.h"

#include "gpu/errors.h"
#include "gpu/gguf_checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace bouquet::gpu {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

}  // namespace

Checkpoint::Checkpoint(std::filesystem::path model_dir) : model_dir_(std::move(model_dir)) {
  if (is_gguf_path(model_dir_)) {
    gguf_ = std::make_unique<GgufCheckpoint>(model_dir_);
    return;
  }
  index_path_ = model_dir_ / kIndexFile;
  if (!std::filesystem::exists(index_path_)) {
    if (!std::filesystem::exists(model_dir_ / kSingleFile)) {
      throw ModelFileError(
          fmt::format("{}: no {} nor {} in this folder", model_dir_.string(), kSingleFile, kIndexFile));
    }
    return;
  }
  std::ifstream in(index_path_);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    throw ModelFileError(fmt::format("{}: not valid JSON ({})", index_path_.string(), e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw ModelFileError(fmt::format("{}: no weight_map object", index_path_.string()));
  }
  for (const auto& [name, file] : index["weight_map"].items()) {
    // A bare file name: "../x" or "/x" would read outside the model folder.
    if (!file.is_string() || file.get<std::string>().empty() ||
        std::filesystem::path(file.get<std::string>()).has_parent_path() || file.get<std::string>() == "..") {
      throw ModelFileError(
          fmt::format("{}: weight_map entry for tensor '{}' is not a file name "
                      "inside the folder",
                      index_path_.string(), name));
    }
    weight_map_[name] = file.get<std::string>();
  }
  if (weight_map_.empty()) {
    throw ModelFileError(fmt::format("{}: weight_map is empty", index_path_.string()));
  }
}

Checkpoint::~Checkpoint() = default;

const SafetensorsFile& Checkpoint::shard(const std::string& file) const {
  auto& slot = shards_[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(model_dir_ / file);
  return *slot;
}

std::string Checkpoint::shard_of(const std::string& name) const {
  if (weight_map_.empty()) return kSingleFile;
  const auto it = weight_map_.find(name);
  return it == weight_map_.end() ? std::string() : it->second;
}

std::optional<TensorInfo> Checkpoint::info(const std::string& name) const {
  std::lock_guard lock(mutex_);
  if (gguf_) return gguf_->info(name);
  const std::string file = shard_of(name);
  if (file.empty()) return std::nullopt;
  const TensorInfo* info = shard(file).find(name);
  if (info == nullptr) return std::nullopt;
  return *info;
}

at::Tensor Checkpoint::read(const std::string& name) const {
  std::lock_guard lock(mutex_);
  if (gguf_) {
    at::Tensor tensor = gguf_->read(name);
    tensors_read_.push_back(name);
    return tensor;
  }
  const std::string file = shard_of(name);
  if (file.empty()) {
    throw ModelFileError(fmt::format("{}: weight_map has no tensor '{}'", index_path_.string(), name));
  }
  const SafetensorsFile& st = shard(file);
  if (st.find(name) == nullptr) {
    throw ModelFileError(fmt::format("{}: missing tensor '{}'{}", st.path().string(), name,
                                     sharded() ? " (weight_map says it is here)" : ""));
  }
  at::Tensor tensor = st.read(name);
  tensors_read_.push_back(name);
  return tensor;
}

std::string Checkpoint::where(const std::string& name) const {
  if (gguf_) return model_dir_.string();
  const std::string file = shard_of(name);
  return file.empty() ? index_path_.string() : (model_dir_ / file).string();
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  if (gguf_) {
    names = gguf_->tensor_names();
  } else if (weight_map_.empty()) {
    for (const auto& [name, info] : shard(kSingleFile).tensors()) names.push_back(name);
  } else {
    for (const auto& [name, file] : weight_map_) names.push_back(name);
  }
  return names;
}

uint64_t Checkpoint::bytes_read() const {
  std::lock_guard lock(mutex_);
  uint64_t total = gguf_ ? gguf_->file().bytes_read() : 0;
  for (const auto& [file, st] : shards_) total += st->bytes_read();
  return total;
}

std::vector<std::string> Checkpoint::tensors_read() const {
  std::lock_guard lock(mutex_);
  return tensors_read_;
}

}  // namespace bouquet::gpu

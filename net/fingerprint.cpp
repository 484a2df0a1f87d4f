#include "net/fingerprint.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "gpu/checkpoint.h"
#include "gpu/errors.h"

namespace bouquet::net {
namespace {

class Fnv1a64 {
 public:
  void add(std::string_view bytes) {
    for (unsigned char c : bytes) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ull;
    }
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

constexpr uint64_t kSampleBytes = 64;

// The first and last kSampleBytes of each tensor's data (all of it when shorter), read from the
// shard files with pread; a shard is opened once.
class TensorSampler {
 public:
  std::string sample(const std::string& file, const gpu::TensorInfo& info) {
    const Shard& shard = open(file);
    const uint64_t size = info.size_bytes();
    const uint64_t head = std::min(size, kSampleBytes);
    const uint64_t tail = std::min(size - head, kSampleBytes);
    std::string bytes(head + tail, '\0');
    read(shard, file, info, shard.data_start + info.begin, head, bytes.data());
    read(shard, file, info, shard.data_start + info.end - tail, tail, bytes.data() + head);
    return bytes;
  }

 private:
  struct Shard {
    int fd = -1;
    uint64_t data_start = 0;
    ~Shard() {
      if (fd >= 0) ::close(fd);
    }
  };

  const Shard& open(const std::string& file) {
    auto& shard = shards_[file];
    if (!shard) {
      shard = std::make_unique<Shard>();
      shard->data_start = gpu::SafetensorsFile(file).header_size_bytes();
      shard->fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (shard->fd < 0) throw gpu::ModelFileError(fmt::format("{}: cannot open", file));
    }
    return *shard;
  }

  static void read(const Shard& shard, const std::string& file, const gpu::TensorInfo& info,
                   uint64_t offset, uint64_t size, char* out) {
    while (size > 0) {
      const ssize_t got = ::pread(shard.fd, out, size, static_cast<off_t>(offset));
      if (got <= 0) {
        throw gpu::ModelFileError(
            fmt::format("{}: tensor '{}': short read (the file is truncated)", file, info.name));
      }
      out += got;
      offset += static_cast<uint64_t>(got);
      size -= static_cast<uint64_t>(got);
    }
  }

  std::map<std::string, std::unique_ptr<Shard>> shards_;
};

}  // namespace

std::string model_fingerprint(const std::filesystem::path& model_dir) {
  const auto config_path = model_dir / "config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw gpu::ModelFileError(fmt::format("{}: cannot open", config_path.string()));
  std::ostringstream config;
  config << in.rdbuf();
  Fnv1a64 hash;
  hash.add("config.json\n");
  hash.add(config.str());
  hash.add("\n");
  const gpu::Checkpoint checkpoint(model_dir);
  std::vector<std::string> names = checkpoint.tensor_names();
  std::sort(names.begin(), names.end());
  TensorSampler sampler;
  for (const auto& name : names) {
    const auto info = checkpoint.info(name);
    if (!info) throw gpu::ModelFileError(fmt::format("{}: tensor {} vanished", checkpoint.where(name), name));
    hash.add(fmt::format("{} {} {}\n", name, gpu::dtype_name(info->dtype), gpu::format_shape(info->shape)));
    hash.add(sampler.sample(checkpoint.where(name), *info));
  }
  return fmt::format("{:016x}", hash.value());
}

}  // namespace bouquet::net

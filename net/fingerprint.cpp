#include "net/fingerprint.h"

#include <fmt/core.h>

#include <algorithm>
#include <fstream>
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
  for (const auto& name : names) {
    const auto info = checkpoint.info(name);
    if (!info) throw gpu::ModelFileError(fmt::format("{}: tensor {} vanished", checkpoint.where(name), name));
    hash.add(fmt::format("{} {} {}\n", name, gpu::dtype_name(info->dtype), gpu::format_shape(info->shape)));
  }
  return fmt::format("{:016x}", hash.value());
}

}  // namespace bouquet::net

#include "gpu/fingerprint.h"

#include <fmt/core.h>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "gpu/checkpoint.h"
#include "gpu/errors.h"
#include "gpu/gguf.h"
#include "gpu/gguf_checkpoint.h"

namespace bouquet::net {
namespace {

constexpr int kCacheVersion = 1;
constexpr uint64_t kChunkBytes = uint64_t{4} << 20;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("fingerprint: OpenSSL could not start a SHA-256");
    }
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void add(std::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }
  // The first 8 bytes of the digest as 16 hex digits: the fingerprint's format since v1.
  std::string hex16() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx_, digest, &size);
    std::string out;
    for (int i = 0; i < 8; ++i) out += fmt::format("{:02x}", digest[i]);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw gpu::ModelFileError(fmt::format("{}: cannot open", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Adds every byte of `info`'s data in `file` to `hash`, a chunk at a time.
void hash_tensor(const std::string& file, int fd, uint64_t data_start, const gpu::TensorInfo& info, Sha256& hash) {
  std::string chunk;
  uint64_t offset = data_start + info.begin;
  uint64_t left = info.size_bytes();
  while (left > 0) {
    chunk.resize(std::min(left, kChunkBytes));
    size_t filled = 0;
    while (filled < chunk.size()) {
      const ssize_t got =
          ::pread(fd, chunk.data() + filled, chunk.size() - filled, static_cast<off_t>(offset + filled));
      if (got <= 0) {
        throw gpu::ModelFileError(fmt::format("{}: tensor '{}': short read (the file is truncated)", file, info.name));
      }
      filled += static_cast<size_t>(got);
    }
    hash.add(chunk);
    offset += chunk.size();
    left -= chunk.size();
  }
}

// The files the fingerprint reads, with what says they changed: size, modification time (ns) and
// inode. A cached fingerprint is reused only while every one of them is unchanged.
nlohmann::json file_stamps(const std::filesystem::path& model_dir, const std::set<std::string>& files) {
  nlohmann::json stamps = nlohmann::json::object();
  for (const auto& name : files) {
    struct stat st {};
    if (::stat((model_dir / name).c_str(), &st) != 0) continue;  // the hash itself reports it
    stamps[name] = {static_cast<uint64_t>(st.st_size),
                    static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                    static_cast<uint64_t>(st.st_ino)};
  }
  return stamps;
}

std::filesystem::path cache_dir() {
  if (const char* dir = std::getenv("BOUQUET_CACHE_DIR"); dir && *dir) return dir;
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::filesystem::path(home) / ".cache" / "bouquet";
  }
  return {};
}

std::string cached(const std::filesystem::path& file, const nlohmann::json& stamps) {
  const auto j = nlohmann::json::parse(std::ifstream(file), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("v", 0) != kCacheVersion || !j.contains("files") ||
      j["files"] != stamps || !j.contains("fingerprint") || !j["fingerprint"].is_string()) {
    return {};
  }
  return j["fingerprint"].get<std::string>();
}

void store(const std::filesystem::path& file, const std::filesystem::path& model_dir, const nlohmann::json& stamps,
           const std::string& fingerprint) {
  std::error_code error;
  std::filesystem::create_directories(file.parent_path(), error);
  // A private file renamed over the cache: a reader never sees half of one. A cache that cannot
  // be written only costs a re-read next time.
  const std::filesystem::path tmp = file.string() + fmt::format(".{}.tmp", ::getpid());
  {
    std::ofstream out(tmp);
    out << nlohmann::json{{"v", kCacheVersion},
                          {"model_dir", model_dir.string()},
                          {"files", stamps},
                          {"fingerprint", fingerprint}}
               .dump(1);
    if (!out.flush()) return;
  }
  std::filesystem::rename(tmp, file, error);
  if (error) std::filesystem::remove(tmp, error);
}

std::string compute(const std::string& config, const gpu::Checkpoint& checkpoint,
                    const std::vector<std::string>& names) {
  Sha256 hash;
  hash.add("config.json\n");
  hash.add(config);
  hash.add("\n");
  struct Shard {
    int fd = -1;
    uint64_t data_start = 0;
    ~Shard() {
      if (fd >= 0) ::close(fd);
    }
  };
  std::map<std::string, std::unique_ptr<Shard>> shards;
  for (const auto& name : names) {
    const auto info = checkpoint.info(name);
    if (!info) throw gpu::ModelFileError(fmt::format("{}: tensor {} vanished", checkpoint.where(name), name));
    const std::string file = checkpoint.where(name);
    auto& shard = shards[file];
    if (!shard) {
      shard = std::make_unique<Shard>();
      shard->data_start = gpu::SafetensorsFile(file).header_size_bytes();
      shard->fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (shard->fd < 0) throw gpu::ModelFileError(fmt::format("{}: cannot open", file));
    }
    hash.add(fmt::format("{} {} {}\n", name, gpu::dtype_name(info->dtype), gpu::format_shape(info->shape)));
    hash_tensor(file, shard->fd, shard->data_start, *info, hash);
  }
  return hash.hex16();
}

// A GGUF file's fingerprint: the config its metadata gives, then per tensor (by Hugging Face name)
// its stored type, shape and bytes. Quantized weights are other weights than the folder's.
std::string compute_gguf(const gpu::GgufCheckpoint& checkpoint) {
  Sha256 hash;
  hash.add("gguf\nconfig.json\n");
  hash.add(checkpoint.config_json());
  hash.add("\n");
  std::vector<std::string> names = checkpoint.tensor_names();
  std::sort(names.begin(), names.end());
  const std::string file = checkpoint.file().path().string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw gpu::ModelFileError(fmt::format("{}: cannot open", file));
  try {
    for (const auto& name : names) {
      const gpu::GgufTensor& t = *checkpoint.file().find(checkpoint.gguf_name(name));
      hash.add(fmt::format("{} {} {}\n", name, gpu::ggml_type_name(t.type), gpu::format_shape(t.shape())));
      gpu::TensorInfo info;
      info.name = name;
      info.begin = t.offset;
      info.end = t.offset + t.size_bytes;
      hash_tensor(file, fd, checkpoint.file().data_start(), info, hash);
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return hash.hex16();
}

std::string gguf_fingerprint(const std::filesystem::path& path) {
  const gpu::GgufCheckpoint checkpoint(path);
  const auto stamp = [&] {
    nlohmann::json stamps = nlohmann::json::object();
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      stamps[path.filename().string()] = {static_cast<uint64_t>(st.st_size),
                                          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                                          static_cast<uint64_t>(st.st_ino)};
    }
    return stamps;
  };
  const nlohmann::json stamps = stamp();
  const std::filesystem::path cache = fingerprint_cache_file(path);
  if (!cache.empty()) {
    if (std::string hit = cached(cache, stamps); !hit.empty()) return hit;
  }
  const std::string fingerprint = compute_gguf(checkpoint);
  if (!cache.empty() && stamp() == stamps) store(cache, path, stamps, fingerprint);
  return fingerprint;
}

}  // namespace

std::filesystem::path fingerprint_cache_file(const std::filesystem::path& model_dir) {
  const std::filesystem::path dir = cache_dir();
  if (dir.empty()) return {};
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::weakly_canonical(model_dir, error);
  if (error) absolute = std::filesystem::absolute(model_dir);
  Sha256 key;
  key.add(absolute.string());
  return dir / "fingerprints" / (key.hex16() + ".json");
}

std::string model_fingerprint(const std::filesystem::path& model_dir) {
  if (gpu::is_gguf_path(model_dir)) return gguf_fingerprint(model_dir);
  const std::string config = read_file(model_dir / "config.json");  // first: its error names the folder's config
  const gpu::Checkpoint checkpoint(model_dir);
  std::vector<std::string> names = checkpoint.tensor_names();
  std::sort(names.begin(), names.end());
  std::set<std::string> files = {"config.json"};
  if (checkpoint.sharded()) files.insert("model.safetensors.index.json");
  for (const auto& name : names) {
    files.insert(std::filesystem::path(checkpoint.where(name)).lexically_relative(model_dir).string());
  }
  const nlohmann::json stamps = file_stamps(model_dir, files);
  const std::filesystem::path cache = fingerprint_cache_file(model_dir);
  if (!cache.empty()) {
    if (std::string hit = cached(cache, stamps); !hit.empty()) return hit;
  }
  const std::string fingerprint = compute(config, checkpoint, names);
  // A file that changed while it was read would cache a fingerprint of neither version.
  if (!cache.empty() && file_stamps(model_dir, files) == stamps) store(cache, model_dir, stamps, fingerprint);
  return fingerprint;
}

}  // namespace bouquet::net

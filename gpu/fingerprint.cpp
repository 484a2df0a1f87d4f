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
#include "gpu/model_config.h"

namespace bouquet::net {
namespace {

// Version 2: the canonical hyper-parameters and the folder's row order (a GGUF and the folder it
// was converted from are one model when their weights are).
constexpr std::string_view kHeader = "bouquet-fingerprint-v2\n";

// 2: fingerprints hash the canonical hyper-parameters and the Hugging Face row order (v2); a
// cache of v1 fingerprints is not reused.
constexpr int kCacheVersion = 2;
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

// A double as the float32 it rounds to, in the shortest text that reads back to that float: GGUF
// stores norm epsilons and rope bases as float32, config.json as decimal text, and both must agree.
std::string as_f32(double value) {
  const float f = static_cast<float>(value);
  for (int digits = 6; digits < 10; ++digits) {
    std::string text = fmt::format("{:.{}g}", f, digits);
    if (std::strtof(text.c_str(), nullptr) == f) return text;
  }
  return fmt::format("{:.9g}", f);
}

// What decides what a block and the client's head compute, whatever file it came from: a
// config.json's extra fields (token ids, torch_dtype, its formatting) and a GGUF's metadata layout
// are not part of a model's identity; its hyper-parameters and weights are.
std::string canonical_config(const gpu::ModelConfig& c) {
  std::string text = fmt::format(
      "family {}\nhidden {}\nintermediate {}\nlayers {}\nheads {}\nkv_heads {}\nhead_dim {}\nvocab {}\n"
      "norm_eps {}\nrope_theta {}\nmax_positions {}\ntied {}\n",
      c.family, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size,
      as_f32(c.norm_eps), as_f32(c.rope_theta), c.max_position_embeddings, c.tie_word_embeddings ? 1 : 0);
  if (c.rope_scaling) {
    const gpu::RopeScaling& r = *c.rope_scaling;
    text += fmt::format("rope_scaling {} {} {} {} {}\n", r.type, as_f32(r.factor), as_f32(r.low_freq_factor),
                        as_f32(r.high_freq_factor), r.original_max_position_embeddings);
  }
  return text;
}

// Hashes `rows` rows of `row_bytes` each, starting at `offset`, in the order `source_row` gives
// (output row r is stored row source_row(r)): a GGUF's Q and K rows go back to the order of the
// folder they were converted from, a row at a time, quantized or not (each row is its own blocks).
template <typename SourceRow>
void hash_rows(const std::string& file, int fd, uint64_t offset, int64_t rows, uint64_t row_bytes, SourceRow source_row,
               const std::string& name, Sha256& hash) {
  std::string row(row_bytes, '\0');
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t at = offset + static_cast<uint64_t>(source_row(r)) * row_bytes;
    size_t filled = 0;
    while (filled < row.size()) {
      const ssize_t got = ::pread(fd, row.data() + filled, row.size() - filled, static_cast<off_t>(at + filled));
      if (got <= 0) {
        throw gpu::ModelFileError(fmt::format("{}: tensor '{}': short read (the file is truncated)", file, name));
      }
      filled += static_cast<size_t>(got);
    }
    hash.add(row);
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

// `prefix` (the version's header and hyper-parameters), then the folder's tensors as stored.
std::string compute(std::string_view prefix, const gpu::Checkpoint& checkpoint, const std::vector<std::string>& names) {
  Sha256 hash;
  hash.add(prefix);
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

// A GGUF file's fingerprint: `prefix`, then per tensor (by Hugging Face name) its stored type (a
// quantized one is other weights than any folder's) and bytes, with its Q and K rows in the
// folder's rotary order when `folder_rows` (version 2) or as stored (version 1).
std::string compute_gguf(std::string_view prefix, const gpu::GgufCheckpoint& checkpoint, bool folder_rows) {
  Sha256 hash;
  hash.add(prefix);
  std::vector<std::string> names = checkpoint.tensor_names();
  std::sort(names.begin(), names.end());
  const std::string file = checkpoint.file().path().string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw gpu::ModelFileError(fmt::format("{}: cannot open", file));
  try {
    const gpu::ModelConfig& config = checkpoint.config();
    for (const auto& name : names) {
      const gpu::GgufTensor& t = *checkpoint.file().find(checkpoint.gguf_name(name));
      const std::vector<int64_t> shape = t.shape();
      hash.add(fmt::format("{} {} {}\n", name, gpu::ggml_type_name(t.type), gpu::format_shape(shape)));
      const uint64_t offset = checkpoint.file().data_start() + t.offset;
      const bool q = name.ends_with("self_attn.q_proj.weight");
      const int64_t heads = q ? config.num_heads : config.num_kv_heads;
      const int64_t half = config.head_dim / 2;
      if (folder_rows && (q || name.ends_with("self_attn.k_proj.weight")) && shape.size() == 2 &&
          shape[0] == heads * 2 * half && shape[0] > 0) {
        // GgufCheckpoint::read's un-permutation: row (h, i, j) of the folder is stored row (h, j, i).
        const auto source = [&](int64_t r) {
          const int64_t h = r / (2 * half), i = (r / half) % 2, j = r % half;
          return h * 2 * half + j * 2 + i;
        };
        hash_rows(file, fd, offset, shape[0], t.size_bytes / static_cast<uint64_t>(shape[0]), source, name, hash);
      } else {
        gpu::TensorInfo info;
        info.name = name;
        info.begin = t.offset;
        info.end = t.offset + t.size_bytes;
        hash_tensor(file, fd, checkpoint.file().data_start(), info, hash);
      }
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return hash.hex16();
}

std::string v2_prefix(const gpu::ModelConfig& config) { return std::string(kHeader) + canonical_config(config); }

std::vector<std::string> sorted_names(const gpu::Checkpoint& checkpoint) {
  std::vector<std::string> names = checkpoint.tensor_names();
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw gpu::ModelFileError(fmt::format("{}: cannot open", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
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
  const std::string fingerprint = compute_gguf(v2_prefix(checkpoint.config()), checkpoint, true);
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
  const gpu::ModelConfig config = gpu::load_model_config(model_dir);  // first: its error names config.json
  const gpu::Checkpoint checkpoint(model_dir);
  const std::vector<std::string> names = sorted_names(checkpoint);
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
  const std::string fingerprint = compute(v2_prefix(config), checkpoint, names);
  // A file that changed while it was read would cache a fingerprint of neither version.
  if (!cache.empty() && file_stamps(model_dir, files) == stamps) store(cache, model_dir, stamps, fingerprint);
  return fingerprint;
}

std::string legacy_model_fingerprint(const std::filesystem::path& model_dir) {
  if (gpu::is_gguf_path(model_dir)) {
    const gpu::GgufCheckpoint checkpoint(model_dir);
    return compute_gguf("gguf\nconfig.json\n" + checkpoint.config_json() + "\n", checkpoint, false);
  }
  const std::string config = read_file(model_dir / "config.json");
  const gpu::Checkpoint checkpoint(model_dir);
  return compute("config.json\n" + config + "\n", checkpoint, sorted_names(checkpoint));
}

}  // namespace bouquet::net

// The GGUF file format (llama.cpp's checkpoints, versions 2 and 3): a little-endian header
// ("GGUF", version, tensor count, metadata count), typed metadata key/values (integers, floats,
// bools, strings and arrays of them), tensor infos (name, dims innermost first, ggml type, offset),
// then the tensor data, each tensor aligned to general.alignment (32 by default).
//
// GgufFile promises: opening reads and validates the header, metadata and tensor infos only —
// every count, length and offset bounded by the file's size before anything is allocated, known
// value types, known tensor types, tensors inside the data section and of the size their type and
// dims need; a tensor's bytes are read on demand with pread, never the whole file, and counted.
// Every problem is a ModelFileError naming the file and, where one is involved, the key or tensor.
// The format needs no libtorch (fuzz/ builds it without); read_f32 is in gpu/model_file_tensors.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace at {
class Tensor;
}

namespace bouquet::gpu {

// ggml's tensor type ids (ggml.h); those listed are the ones Bouquet dequantizes.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct GgmlTypeInfo {
  std::string_view name;
  int64_t block_elements;  // values per block
  int64_t block_bytes;     // bytes per block
};

// nullopt for a type id Bouquet does not read (named in messages by its number).
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type);
// The type's name ("Q4_K"), or "type N" for one Bouquet does not know.
std::string ggml_type_name(uint32_t type);

// `count` values of `type` (a multiple of its block size) from `data` into `out` as f32, exactly as
// llama.cpp's dequantize_row_* computes them. The type must be one ggml_type_info knows.
void dequantize(uint32_t type, const uint8_t* data, int64_t count, float* out);

struct GgufTensor {
  std::string name;
  uint32_t type = 0;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the innermost (contiguous) dimension
  uint64_t offset = 0;        // relative to the start of the data section
  uint64_t size_bytes = 0;

  int64_t numel() const;
  // The row-major (torch) shape: dims reversed.
  std::vector<int64_t> shape() const;
};

class GgufFile {
 public:
  explicit GgufFile(std::filesystem::path path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  // Key -> value: integers and bools as JSON numbers and booleans, floats as doubles, strings as
  // (possibly non-UTF-8) strings, arrays as arrays.
  const nlohmann::json& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  // nullptr when the file has no tensor of that name.
  const GgufTensor* find(std::string_view name) const;

  // The tensor dequantized to a new f32 CPU tensor of shape() (torch order); defined in
  // gpu/model_file_tensors.cpp.
  at::Tensor read_f32(std::string_view name) const;
  // The stored bytes of `tensor` (size_bytes of them) into `destination`.
  void read_bytes(const GgufTensor& tensor, void* destination) const;
  uint64_t bytes_read() const { return bytes_read_.load(); }
  uint64_t data_start() const { return data_start_; }

  // A metadata value of the expected kind, or a ModelFileError "<file>: metadata 'key' ...".
  bool has(std::string_view key) const;
  int64_t integer(std::string_view key) const;
  double number(std::string_view key) const;
  std::string string(std::string_view key) const;
  [[noreturn]] void fail(std::string_view what) const;

 private:
  void parse(uint64_t file_size);

  std::filesystem::path path_;
  int fd_ = -1;
  uint32_t version_ = 0;
  uint64_t data_start_ = 0;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, GgufTensor> tensors_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

// Whether `path` names a GGUF checkpoint (a regular file ending in .gguf) rather than a folder.
bool is_gguf_path(const std::filesystem::path& path);

}  // namespace bouquet::gpu

// The safetensors file format: an 8-byte little-endian header length, a JSON header mapping each
// tensor name to {dtype, shape, data_offsets} (plus an optional "__metadata__" string map), then the
// raw little-endian tensor bytes.
//
// SafetensorsFile promises: opening reads and validates the header only (length inside the file and
// at most 100 MB, known dtypes, offsets inside the data, not overlapping, and matching dtype *
// shape); a tensor's bytes are read on demand with pread, never the whole file; every problem,
// whatever the header holds, is a ModelFileError naming the file and the tensor. bytes_read() counts the tensor bytes
// read so far, so a caller can show what a loader touched.
//
// The format itself needs no libtorch (fuzz/ builds it without): what turns its bytes into tensors
// and tensors into a file is in gpu/model_file_tensors.h.
#pragma once

#include <nlohmann/json_fwd.hpp>

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

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

// "F32" -> DType::F32; nullopt for a name safetensors does not define (or we do not read).
std::optional<DType> parse_dtype(std::string_view name);
std::string_view dtype_name(DType dtype);
size_t dtype_size_bytes(DType dtype);
bool is_floating(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the start of the data section
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t size_bytes() const { return end - begin; }
};

// "[4096, 11008]", for messages.
std::string format_shape(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::filesystem::path path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when the file has no tensor of that name.
  const TensorInfo* find(std::string_view name) const;

  // A new CPU tensor with the stored dtype and shape. Throws ModelFileError for a missing tensor or
  // a short read (the file changed under us). Defined with the other tensor code in
  // gpu/model_file_tensors.cpp.
  at::Tensor read(std::string_view name) const;
  // The raw little-endian bytes of `info` (info.size_bytes() of them) into `destination`.
  void read_bytes(const TensorInfo& info, void* destination) const;

  // Tensor data bytes read so far through read()/read_bytes() (the header is not counted).
  uint64_t bytes_read() const { return bytes_read_.load(); }
  uint64_t header_size_bytes() const { return data_start_; }

 private:
  void parse_header(std::string_view header, uint64_t data_size_bytes);
  // One tensor's entry, every field checked; throws ModelFileError naming the tensor.
  TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry, uint64_t data_size_bytes) const;

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

// One tensor's stored bytes for write_safetensors_file: `bytes` holds numel(shape) values of `dtype`,
// little-endian.
struct SafetensorsBlob {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Writes `blobs` in the given order with the header padded to 8 bytes. The file is replaced
// atomically (written beside it, synced, renamed): a kill mid-write leaves the old file intact.
void write_safetensors_file(const std::filesystem::path& path, const std::vector<SafetensorsBlob>& blobs,
                            const std::map<std::string, std::string>& metadata);

// Round-to-nearest-even f32 -> bf16 bits (NaN stays a quiet NaN).
uint16_t float_to_bf16_bits(float value);

}  // namespace bouquet::gpu

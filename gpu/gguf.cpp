#include "gpu/gguf.h"

#include "core/check.h"
#include "gpu/errors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace bouquet::gpu {
namespace {

constexpr GgmlTypeInfo kF32{"F32", 1, 4};
constexpr GgmlTypeInfo kF16{"F16", 1, 2};
constexpr GgmlTypeInfo kBF16{"BF16", 1, 2};
constexpr GgmlTypeInfo kQ4_0{"Q4_0", 32, 18};
constexpr GgmlTypeInfo kQ4_1{"Q4_1", 32, 20};
constexpr GgmlTypeInfo kQ8_0{"Q8_0", 32, 34};
constexpr GgmlTypeInfo kQ4_K{"Q4_K", 256, 144};
constexpr GgmlTypeInfo kQ5_K{"Q5_K", 256, 176};
constexpr GgmlTypeInfo kQ6_K{"Q6_K", 256, 210};

// Names of ggml types Bouquet does not dequantize, so that a refusal says what the file holds.
constexpr std::pair<uint32_t, std::string_view> kOtherTypeNames[] = {
    {6, "Q5_0"},     {7, "Q5_1"},    {9, "Q8_1"},     {10, "Q2_K"},  {11, "Q3_K"},   {15, "Q8_K"},
    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"},
    {22, "IQ2_S"},   {23, "IQ4_XS"}, {24, "I8"},      {25, "I16"},   {26, "I32"},    {27, "I64"},
    {28, "F64"},     {29, "IQ1_M"},  {34, "TQ1_0"},   {35, "TQ2_0"},
};

// GGUF metadata value types (gguf.h).
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32v = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64v = 12,
};

constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;  // arrays of arrays exist; deeper is corruption
constexpr uint64_t kMaxDim = uint64_t{1} << 40;
// Metadata values held in memory (each ~16 bytes as JSON, whatever its size in the file): far above
// any real tokenizer (Gemma's 256k tokens), far below what would exhaust memory.
constexpr uint64_t kMaxMetadataValues = uint64_t{1} << 24;

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

uint16_t u16_at(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float f16_at(const uint8_t* p) { return half_to_float(u16_at(p)); }

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dequantize_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void dequantize_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0xF) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

void dequantize_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void dequantize_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

void dequantize_q5_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
  }
}

void dequantize_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
  }
}

// Reads exactly `size` bytes at `offset`; false on a short read.
bool pread_all(int fd, void* destination, uint64_t size, uint64_t offset) {
  auto* out = static_cast<char*>(destination);
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// Sequential reads of the header through a window of the file; every read is checked against the
// file's size first, so a corrupt length becomes an error, never an allocation or a read past it.
class Cursor {
 public:
  Cursor(const GgufFile& file, int fd, uint64_t size) : file_(file), fd_(fd), size_(size) {}

  uint64_t position() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  void bytes(void* out, uint64_t n, std::string_view what) {
    if (n > left()) {
      file_.fail(
          fmt::format("{} needs {} bytes at offset {} but the file ends at {}; it is truncated "
                      "or corrupt",
                      what, n, pos_, size_));
    }
    if (pos_ < window_start_ || pos_ + n > window_start_ + window_.size()) {
      window_start_ = pos_;
      window_.resize(std::min<uint64_t>(std::max<uint64_t>(n, kWindowBytes), left()));
      if (!pread_all(fd_, window_.data(), window_.size(), pos_)) file_.fail("short read of the header");
    }
    std::memcpy(out, window_.data() + (pos_ - window_start_), n);
    pos_ += n;
  }
  template <typename T>
  T get(std::string_view what) {
    unsigned char raw[sizeof(T)];
    bytes(raw, sizeof(T), what);
    uint64_t v = 0;
    for (int i = sizeof(T) - 1; i >= 0; --i) v = (v << 8) | raw[i];
    T out;
    if constexpr (std::is_floating_point_v<T>) {
      if constexpr (sizeof(T) == 4) {
        const auto bits = static_cast<uint32_t>(v);
        std::memcpy(&out, &bits, 4);
      } else {
        std::memcpy(&out, &v, 8);
      }
    } else {
      out = static_cast<T>(v);
    }
    return out;
  }
  std::string string(std::string_view what) {
    const auto length = get<uint64_t>(what);
    if (length > left()) {
      file_.fail(
          fmt::format("{}: string length {} runs past the end of the file; it is truncated or corrupt", what, length));
    }
    std::string out(length, '\0');
    bytes(out.data(), length, what);
    return out;
  }

 private:
  static constexpr uint64_t kWindowBytes = uint64_t{1} << 20;
  const GgufFile& file_;
  int fd_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string window_;
  uint64_t window_start_ = 0;
};

uint64_t value_min_bytes(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32v:
      return 4;
    default:
      return 8;  // u64, i64, f64, a string's length, an array's type + count (12)
  }
}

nlohmann::json read_value(Cursor& in, uint32_t type, const std::string& key, const GgufFile& file, int depth,
                          uint64_t& values) {
  const std::string what = fmt::format("metadata '{}'", key);
  if (++values > kMaxMetadataValues) {
    file.fail(fmt::format("{}: the metadata holds over {} values; the file is corrupt", what, kMaxMetadataValues));
  }
  switch (type) {
    case kU8:
      return in.get<uint8_t>(what);
    case kI8:
      return in.get<int8_t>(what);
    case kU16:
      return in.get<uint16_t>(what);
    case kI16:
      return in.get<int16_t>(what);
    case kU32:
      return in.get<uint32_t>(what);
    case kI32:
      return in.get<int32_t>(what);
    case kU64:
      return in.get<uint64_t>(what);
    case kI64:
      return in.get<int64_t>(what);
    case kF32v:
      return static_cast<double>(in.get<float>(what));
    case kF64v:
      return in.get<double>(what);
    case kBool: {
      const auto b = in.get<uint8_t>(what);
      if (b > 1) file.fail(fmt::format("{}: bool holds {}, not 0 or 1", what, b));
      return b == 1;
    }
    case kString:
      return in.string(what);
    case kArray: {
      if (depth >= kMaxArrayDepth) file.fail(fmt::format("{}: arrays nested deeper than {}", what, kMaxArrayDepth));
      const auto item_type = in.get<uint32_t>(what);
      const auto count = in.get<uint64_t>(what);
      if (item_type > kF64v) file.fail(fmt::format("{}: array of unknown value type {}", what, item_type));
      if (count > in.left() / value_min_bytes(item_type)) {
        file.fail(
            fmt::format("{}: array of {} values cannot fit in the {} bytes left; the file is truncated or "
                        "corrupt",
                        what, count, in.left()));
      }
      nlohmann::json array = nlohmann::json::array();
      array.get_ref<nlohmann::json::array_t&>().reserve(count);
      if (count > kMaxMetadataValues) {
        file.fail(fmt::format("{}: array of {} values; the file is corrupt", what, count));
      }
      for (uint64_t i = 0; i < count; ++i) array.push_back(read_value(in, item_type, key, file, depth + 1, values));
      return array;
    }
    default:
      file.fail(fmt::format("{}: unknown value type {}", what, type));
  }
}

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      return kF32;
    case GgmlType::F16:
      return kF16;
    case GgmlType::BF16:
      return kBF16;
    case GgmlType::Q4_0:
      return kQ4_0;
    case GgmlType::Q4_1:
      return kQ4_1;
    case GgmlType::Q8_0:
      return kQ8_0;
    case GgmlType::Q4_K:
      return kQ4_K;
    case GgmlType::Q5_K:
      return kQ5_K;
    case GgmlType::Q6_K:
      return kQ6_K;
  }
  return std::nullopt;
}

std::string ggml_type_name(uint32_t type) {
  if (const auto info = ggml_type_info(type)) return std::string(info->name);
  for (const auto& [id, name] : kOtherTypeNames) {
    if (id == type) return std::string(name);
  }
  return fmt::format("type {}", type);
}

void dequantize(uint32_t type, const uint8_t* data, int64_t count, float* out) {
  const auto info = ggml_type_info(type);
  BOUQUET_CHECK(info.has_value(), "dequantize: a ggml type ggml_type_info does not know");
  BOUQUET_CHECK(count % info->block_elements == 0, "dequantize: count is not whole blocks");
  const int64_t blocks = count / info->block_elements;
  for (int64_t i = 0; i < blocks; ++i) {
    const uint8_t* b = data + i * info->block_bytes;
    float* y = out + i * info->block_elements;
    switch (static_cast<GgmlType>(type)) {
      case GgmlType::F32:
        std::memcpy(y, b, 4);
        break;
      case GgmlType::F16:
        *y = f16_at(b);
        break;
      case GgmlType::BF16: {
        const uint32_t bits = static_cast<uint32_t>(u16_at(b)) << 16;
        std::memcpy(y, &bits, 4);
        break;
      }
      case GgmlType::Q4_0:
        dequantize_q4_0(b, y);
        break;
      case GgmlType::Q4_1:
        dequantize_q4_1(b, y);
        break;
      case GgmlType::Q8_0:
        dequantize_q8_0(b, y);
        break;
      case GgmlType::Q4_K:
        dequantize_q4_k(b, y);
        break;
      case GgmlType::Q5_K:
        dequantize_q5_k(b, y);
        break;
      case GgmlType::Q6_K:
        dequantize_q6_k(b, y);
        break;
    }
  }
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> GgufTensor::shape() const { return std::vector<int64_t>(dims.rbegin(), dims.rend()); }

bool is_gguf_path(const std::filesystem::path& path) {
  std::error_code error;
  return path.extension() == ".gguf" && !std::filesystem::is_directory(path, error);
}

GgufFile::GgufFile(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(fmt::format("cannot open: {}", std::strerror(errno)));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(fmt::format("cannot stat: {}", std::strerror(errno)));
    parse(static_cast<uint64_t>(st.st_size));
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

GgufFile::~GgufFile() {
  if (fd_ >= 0) ::close(fd_);
}

void GgufFile::fail(std::string_view what) const { throw ModelFileError(fmt::format("{}: {}", path_.string(), what)); }

void GgufFile::parse(uint64_t file_size) {
  Cursor in(*this, fd_, file_size);
  char magic[4];
  if (file_size < 4) fail(fmt::format("file is {} bytes, too short for a GGUF header", file_size));
  in.bytes(magic, 4, "the magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) fail("does not start with 'GGUF'; it is not a GGUF file");
  version_ = in.get<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    fail(fmt::format("GGUF version {} (Bouquet reads versions 2 and 3)", version_));
  }
  const auto tensor_count = in.get<uint64_t>("the tensor count");
  const auto kv_count = in.get<uint64_t>("the metadata count");
  // A key/value takes at least 13 bytes and a tensor info at least 24: larger counts are corrupt.
  if (kv_count > in.left() / 13) fail(fmt::format("metadata count {} cannot fit in the file", kv_count));
  if (tensor_count > in.left() / 24) fail(fmt::format("tensor count {} cannot fit in the file", tensor_count));
  uint64_t values = 0;
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.string(fmt::format("metadata key {}", i));
    const auto type = in.get<uint32_t>(fmt::format("metadata '{}'", key));
    nlohmann::json value = read_value(in, type, key, *this, 0, values);
    if (metadata_.contains(key)) fail(fmt::format("metadata '{}' appears twice", key));
    metadata_[key] = std::move(value);
  }
  uint64_t alignment = 32;
  if (has("general.alignment")) {
    const int64_t a = integer("general.alignment");
    if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20)) {
      fail(fmt::format("metadata 'general.alignment' is {}, not a power of two", a));
    }
    alignment = static_cast<uint64_t>(a);
  }
  std::vector<GgufTensor> infos;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    t.name = in.string(fmt::format("tensor info {}", i));
    const std::string what = fmt::format("tensor '{}'", t.name);
    const auto n_dims = in.get<uint32_t>(what);
    if (n_dims == 0 || n_dims > kMaxDims)
      fail(fmt::format("{}: {} dimensions (1 to {} allowed)", what, n_dims, kMaxDims));
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = in.get<uint64_t>(what);
      if (dim == 0 || dim > kMaxDim) fail(fmt::format("{}: dimension {} is {}", what, d, dim));
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    t.type = in.get<uint32_t>(what);
    t.offset = in.get<uint64_t>(what);
    const auto type = ggml_type_info(t.type);
    if (!type) {
      fail(
          fmt::format("{} has type {}, which Bouquet cannot dequantize (it reads F32, F16, BF16, Q8_0, Q4_0, "
                      "Q4_1, Q4_K, Q5_K, Q6_K)",
                      what, ggml_type_name(t.type)));
    }
    if (t.dims[0] % type->block_elements != 0) {
      fail(fmt::format("{}: its rows of {} values are not whole {} blocks of {}", what, t.dims[0], type->name,
                       type->block_elements));
    }
    uint64_t blocks = static_cast<uint64_t>(t.dims[0] / type->block_elements);
    for (size_t d = 1; d < t.dims.size(); ++d) {
      if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(t.dims[d]), &blocks))
        fail(fmt::format("{}: too large", what));
    }
    if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(type->block_bytes), &t.size_bytes)) {
      fail(fmt::format("{}: too large", what));
    }
    if (t.offset % alignment != 0)
      fail(fmt::format("{}: offset {} is not a multiple of the alignment {}", what, t.offset, alignment));
    infos.push_back(std::move(t));
  }
  data_start_ = (in.position() + alignment - 1) / alignment * alignment;
  const uint64_t data_size = file_size > data_start_ ? file_size - data_start_ : 0;
  for (GgufTensor& t : infos) {
    if (t.offset > data_size || t.size_bytes > data_size - t.offset) {
      fail(
          fmt::format("tensor '{}' ({} {} bytes at data offset {}) runs past the end of the file ({} bytes of "
                      "data); the file is truncated or corrupt",
                      t.name, ggml_type_name(t.type), t.size_bytes, t.offset, data_size));
    }
    const std::string name = t.name;
    if (!tensors_.emplace(name, std::move(t)).second) fail(fmt::format("tensor '{}' appears twice", name));
  }
}

const GgufTensor* GgufFile::find(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

void GgufFile::read_bytes(const GgufTensor& tensor, void* destination) const {
  if (!pread_all(fd_, destination, tensor.size_bytes, data_start_ + tensor.offset)) {
    fail(fmt::format("tensor '{}': short read (the file is truncated or changed while open)", tensor.name));
  }
  bytes_read_ += tensor.size_bytes;
}

bool GgufFile::has(std::string_view key) const { return metadata_.contains(key); }

int64_t GgufFile::integer(std::string_view key) const {
  if (!has(key)) fail(fmt::format("metadata '{}' is missing", key));
  const auto& v = metadata_.at(std::string(key));
  if (!v.is_number_integer()) fail(fmt::format("metadata '{}' is not an integer ({})", key, v.type_name()));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    fail(fmt::format("metadata '{}' is {}, too large", key, v.get<uint64_t>()));
  }
  return v.get<int64_t>();
}

double GgufFile::number(std::string_view key) const {
  if (!has(key)) fail(fmt::format("metadata '{}' is missing", key));
  const auto& v = metadata_.at(std::string(key));
  if (!v.is_number()) fail(fmt::format("metadata '{}' is not a number ({})", key, v.type_name()));
  return v.get<double>();
}

std::string GgufFile::string(std::string_view key) const {
  if (!has(key)) fail(fmt::format("metadata '{}' is missing", key));
  const auto& v = metadata_.at(std::string(key));
  if (!v.is_string()) fail(fmt::format("metadata '{}' is not a string ({})", key, v.type_name()));
  return v.get<std::string>();
}

}  // namespace bouquet::gpu

#include "gpu/safetensors.h"

#include "core/check.h"
#include "gpu/errors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace bouquet::gpu {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;
  size_t size_bytes;
};

constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4},   {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::Bool, "BOOL", 1},
};

const DTypeRow& row(DType dtype) {
  for (const auto& r : kDTypes) {
    if (r.dtype == dtype) return r;
  }
  BOUQUET_CHECK(false, "DType missing from kDTypes");
  __builtin_unreachable();
}

// The reference implementation's limit: a longer length is corruption, not a big model, and must not
// become an allocation of that size.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw ModelFileError(fmt::format("{}: {}", path.string(), what));
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads exactly `size` bytes at `offset`; false on a short read (the file is shorter than that).
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

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Writes `parts` to a fresh file beside `path`, syncs it and renames it over `path`: a process
// killed mid-write (or a full disk) leaves the old file whole, never a truncated one that a later
// load would refuse or, worse, half-read. A kill may leave the temporary file behind.
void write_file_atomically(const std::filesystem::path& path, const std::vector<std::string_view>& parts) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path temp = path.string() + fmt::format(".tmp.{}.{}", ::getpid(), counter.fetch_add(1));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, fmt::format("cannot open {} for writing: {}", temp.string(), std::strerror(errno)));
  int error = 0;
  for (std::string_view part : parts) {
    if (error == 0 && !write_all(fd, part)) error = errno != 0 ? errno : EIO;
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(temp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(temp.c_str());
    fail(path, fmt::format("write failed: {}", std::strerror(error)));
  }
}

}  // namespace

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& r : kDTypes) {
    if (r.name == name) return r.dtype;
  }
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return row(dtype).name; }
size_t dtype_size_bytes(DType dtype) { return row(dtype).size_bytes; }
bool is_floating(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string format_shape(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

SafetensorsFile::SafetensorsFile(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(path_, fmt::format("cannot open: {}", std::strerror(errno)));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(path_, fmt::format("cannot stat: {}", std::strerror(errno)));
    const auto file_size = static_cast<uint64_t>(st.st_size);
    unsigned char prefix[8];
    if (file_size < 8 || !pread_all(fd_, prefix, 8, 0)) {
      fail(path_, fmt::format("file is {} bytes, too short for the 8-byte header length; it is "
                              "truncated or not a safetensors file",
                              file_size));
    }
    const uint64_t header_size = read_u64_le(prefix);
    if (header_size > kMaxHeaderBytes) {
      fail(path_, fmt::format("header length {} is over the {} bytes a safetensors header may have; the "
                              "file is corrupt or not a safetensors file",
                              header_size, kMaxHeaderBytes));
    }
    if (header_size > file_size - 8) {
      fail(path_, fmt::format("header length {} runs past the end of the file ({} bytes); the "
                              "file is truncated or not a safetensors file",
                              header_size, file_size));
    }
    std::string header(header_size, '\0');
    if (!pread_all(fd_, header.data(), header_size, 8)) fail(path_, "short read of the header");
    data_start_ = 8 + header_size;
    parse_header(header, file_size - data_start_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsFile::parse_header(std::string_view header, uint64_t data_size_bytes) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    fail(path_, fmt::format("header is not valid JSON ({})", e.what()));
  }
  if (!json.is_object()) fail(path_, "header is not a JSON object");
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path_, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) fail(path_, fmt::format("__metadata__ '{}' is not a string", key));
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    try {
      tensors_.emplace(name, parse_entry(name, entry, data_size_bytes));
    } catch (const nlohmann::json::exception& e) {  // an access parse_entry's checks missed
      fail(path_, fmt::format("tensor '{}': malformed header entry ({})", name, e.what()));
    }
  }
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : tensors_) {
    if (info.size_bytes() > 0) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      fail(path_, fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", by_offset[i - 1]->name,
                              by_offset[i - 1]->begin, by_offset[i - 1]->end, by_offset[i]->name, by_offset[i]->begin,
                              by_offset[i]->end));
    }
  }
}

TensorInfo SafetensorsFile::parse_entry(const std::string& name, const nlohmann::json& entry,
                                        uint64_t data_size_bytes) const {
  const auto bad = [&](const std::string& what) { fail(path_, fmt::format("tensor '{}': {}", name, what)); };
  if (!entry.is_object()) bad("header entry is not an object");
  if (!entry.contains("dtype") || !entry.at("dtype").is_string()) bad("no dtype string");
  if (!entry.contains("shape") || !entry.at("shape").is_array()) bad("no shape array");
  if (!entry.contains("data_offsets") || !entry.at("data_offsets").is_array() || entry.at("data_offsets").size() != 2) {
    bad("no data_offsets pair");
  }
  TensorInfo info;
  info.name = name;
  const auto dtype_text = entry.at("dtype").get<std::string>();
  const auto dtype = parse_dtype(dtype_text);
  if (!dtype) bad(fmt::format("unknown dtype '{}'", dtype_text));
  info.dtype = *dtype;
  uint64_t expected_bytes = dtype_size_bytes(info.dtype);
  for (const auto& dim : entry.at("shape")) {
    if (!dim.is_number_unsigned()) bad("shape holds a value that is not a non-negative integer");
    const auto d = dim.get<uint64_t>();
    if (d > (uint64_t{1} << 62) || __builtin_mul_overflow(expected_bytes, d, &expected_bytes)) {
      bad("shape is too large");
    }
    info.shape.push_back(static_cast<int64_t>(d));
  }
  for (const auto& offset : entry.at("data_offsets")) {
    if (!offset.is_number_unsigned()) bad("data_offsets holds a value that is not an offset");
  }
  info.begin = entry.at("data_offsets")[0].get<uint64_t>();
  info.end = entry.at("data_offsets")[1].get<uint64_t>();
  if (info.begin > info.end) {
    bad(fmt::format("data_offsets [{}, {}] end before they begin", info.begin, info.end));
  }
  if (info.end > data_size_bytes) {
    bad(
        fmt::format("data_offsets [{}, {}] run past the end of the data ({} bytes); the file is "
                    "truncated or its header is corrupt",
                    info.begin, info.end, data_size_bytes));
  }
  if (info.size_bytes() != expected_bytes) {
    bad(fmt::format("data_offsets [{}, {}] hold {} bytes but dtype {} and shape {} need {}", info.begin, info.end,
                    info.size_bytes(), dtype_text, format_shape(info.shape), expected_bytes));
  }
  return info;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsFile::read_bytes(const TensorInfo& info, void* destination) const {
  if (!pread_all(fd_, destination, info.size_bytes(), data_start_ + info.begin)) {
    fail(path_, fmt::format("tensor '{}': short read (the file is truncated or changed while open)", info.name));
  }
  bytes_read_ += info.size_bytes();
}

uint16_t float_to_bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // keep a NaN a NaN
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

void write_safetensors_file(const std::filesystem::path& path, const std::vector<SafetensorsBlob>& blobs,
                            const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsBlob& blob : blobs) {
    header[blob.name] = {{"dtype", std::string(dtype_name(blob.dtype))},
                         {"shape", blob.shape},
                         {"data_offsets", {offset, offset + blob.bytes.size()}}};
    offset += blob.bytes.size();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(header_text.size() >> (8 * i));
  std::vector<std::string_view> parts = {std::string_view(reinterpret_cast<const char*>(prefix), 8), header_text};
  for (const auto& blob : blobs) parts.emplace_back(blob.bytes);
  write_file_atomically(path, parts);
}

}  // namespace bouquet::gpu

#include "gpu/model_file_tensors.h"

#include "core/check.h"
#include "gpu/errors.h"
#include "gpu/gguf.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace bouquet::gpu {

at::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::F64:
      return at::kDouble;
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    case DType::I64:
      return at::kLong;
    case DType::I32:
      return at::kInt;
    case DType::I16:
      return at::kShort;
    case DType::I8:
      return at::kChar;
    case DType::U8:
      return at::kByte;
    case DType::Bool:
      return at::kBool;
  }
  BOUQUET_CHECK(false, "DType without a torch scalar type");
  __builtin_unreachable();
}

at::Tensor SafetensorsFile::read(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) throw ModelFileError(fmt::format("{}: missing tensor '{}'", path_.string(), name));
  at::Tensor tensor = at::empty(info->shape, at::TensorOptions().dtype(to_scalar_type(info->dtype)));
  read_bytes(*info, tensor.data_ptr());
  return tensor;
}

at::Tensor GgufFile::read_f32(std::string_view name) const {
  const GgufTensor* t = find(name);
  if (t == nullptr) fail(fmt::format("missing tensor '{}'", name));
  at::Tensor out = at::empty(t->shape(), at::TensorOptions().dtype(at::kFloat));
  if (t->type == static_cast<uint32_t>(GgmlType::F32)) {
    read_bytes(*t, out.data_ptr());
    return out;
  }
  std::vector<uint8_t> raw(t->size_bytes);
  read_bytes(*t, raw.data());
  dequantize(t->type, raw.data(), t->numel(), out.data_ptr<float>());
  return out;
}

void require_finite(const at::Tensor& tensor, std::string_view where, std::string_view name) {
  if (!tensor.is_floating_point() || at::isfinite(tensor).all().item<bool>()) return;
  const int64_t bad = at::logical_not(at::isfinite(tensor)).sum().item<int64_t>();
  throw ModelFileError(
      fmt::format("{}: tensor '{}' holds {} NaN or infinite values of {} (as loaded in {}); the "
                  "checkpoint is corrupt or its values overflow that dtype",
                  where, name, bad, tensor.numel(), c10::toString(tensor.scalar_type())));
}

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata) {
  BOUQUET_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
                "write_safetensors writes F32, F16 or BF16");
  std::vector<const NamedTensor*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const NamedTensor* a, const NamedTensor* b) { return a->name < b->name; });

  std::vector<SafetensorsBlob> blobs;
  for (const NamedTensor* t : sorted) {
    BOUQUET_CHECK(t->tensor.is_floating_point(), "write_safetensors takes floating tensors");
    const at::Tensor f32 = t->tensor.detach().to(at::kCPU).to(at::kFloat).contiguous();
    SafetensorsBlob blob{t->name, dtype, t->tensor.sizes().vec(), {}};
    if (dtype == DType::F32) {
      blob.bytes.assign(static_cast<const char*>(f32.data_ptr()), f32.numel() * 4);
    } else if (dtype == DType::F16) {
      const at::Tensor half = f32.to(at::kHalf).contiguous();
      blob.bytes.assign(static_cast<const char*>(half.data_ptr()), half.numel() * 2);
    } else {
      blob.bytes.resize(f32.numel() * 2);
      const float* src = f32.data_ptr<float>();
      for (int64_t i = 0; i < f32.numel(); ++i) {
        const uint16_t b = float_to_bf16_bits(src[i]);
        std::memcpy(blob.bytes.data() + 2 * i, &b, 2);
      }
    }
    blobs.push_back(std::move(blob));
  }
  write_safetensors_file(path, blobs, metadata);
}

}  // namespace bouquet::gpu

// libtorch tensors from and to model files: the torch half of gpu/safetensors.h and gpu/gguf.h,
// whose formats are read without torch (so the fuzz harnesses can link them alone).
//
// Promises: SafetensorsFile::read and GgufFile::read_f32 (declared with their classes) give new CPU
// tensors; write_safetensors converts and writes tensors as safetensors_file describes;
// require_finite refuses a tensor holding NaN or infinity by name.
#pragma once

#include "gpu/safetensors.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

at::ScalarType to_scalar_type(DType dtype);

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

// Writes `tensors` (any floating dtype, any device) converted to `dtype` (F32, F16 or BF16; BF16
// rounds to nearest even), sorted by name, with the header padded to 8 bytes. The file is replaced
// atomically (written beside it, synced, renamed): a kill mid-write leaves the old file intact.
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Throws ModelFileError "<where>: tensor '<name>' holds N NaN or infinite values ..." unless every
// value of `tensor` (as loaded: after conversion to the compute dtype) is finite. Weights are
// checked once at load, so a poisoned checkpoint is refused by name instead of turning every
// answer into NaN.
void require_finite(const at::Tensor& tensor, std::string_view where, std::string_view name);

}  // namespace bouquet::gpu

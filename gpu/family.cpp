#include "gpu/family.h"

#include "core/check.h"
#include "gpu/checkpoint.h"
#include "gpu/errors.h"
#include "gpu/model_file_tensors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>
#include <utility>

namespace bouquet::gpu {

at::Tensor Block::forward(const at::Tensor& hidden, int64_t start_position, KvCache* cache) const {
  return finish(hidden, attend(project(hidden), start_position, cache));
}

std::vector<at::Tensor> Block::forward_batch(const std::vector<BatchPart>& parts) const {
  if (parts.size() == 1) return {forward(parts[0].hidden, parts[0].start_position, parts[0].cache)};
  // The row-wise stages see every part's rows as one [rows, hidden] matrix; attention slices
  // each part's rows back out and runs against that part's cache.
  std::vector<at::Tensor> rows;
  rows.reserve(parts.size());
  for (const BatchPart& part : parts) rows.push_back(part.hidden.reshape({-1, part.hidden.size(-1)}));
  const at::Tensor hidden = at::cat(rows, 0);
  const at::Tensor projected = project(hidden);
  std::vector<at::Tensor> attended;
  attended.reserve(parts.size());
  int64_t offset = 0;
  for (const BatchPart& part : parts) {
    const int64_t batch = part.hidden.size(0);
    const int64_t tokens = part.hidden.size(1);
    const at::Tensor mine = projected.narrow(0, offset, batch * tokens).view({batch, tokens, -1});
    attended.push_back(attend(mine, part.start_position, part.cache).reshape({batch * tokens, -1}));
    offset += batch * tokens;
  }
  const at::Tensor out = finish(hidden, at::cat(attended, 0));
  std::vector<at::Tensor> outputs;
  outputs.reserve(parts.size());
  offset = 0;
  for (const BatchPart& part : parts) {
    const int64_t n = part.hidden.size(0) * part.hidden.size(1);
    outputs.push_back(out.narrow(0, offset, n).view(part.hidden.sizes()));
    offset += n;
  }
  return outputs;
}

// Each family's file defines its accessor; the registry below is the only list of families.
const Family& llama_family();
const Family& bloom_family();

namespace {

using FamilyAccessor = const Family& (*)();

constexpr std::pair<std::string_view, FamilyAccessor> kFamilies[] = {
    {"llama", llama_family},
    {"bloom", bloom_family},
};

std::optional<DType> stored_dtype_of(const ModelConfig& config) {
  if (config.torch_dtype == "float32") return DType::F32;
  if (config.torch_dtype == "float16") return DType::F16;
  if (config.torch_dtype == "bfloat16") return DType::BF16;
  return std::nullopt;
}

TensorMap load_tensors(const ModelConfig& config, const TensorSource& source, const std::vector<TensorSpec>& specs,
                       const ComputeOptions& options) {
  const std::optional<DType> expected_dtype = stored_dtype_of(config);
  TensorMap tensors;
  for (const TensorSpec& spec : specs) {
    std::string stored_name = spec.name;
    std::optional<TensorInfo> info = source.info(stored_name);
    for (size_t i = 0; !info && i < spec.other_names.size(); ++i) {
      info = source.info(spec.other_names[i]);
      if (info) stored_name = spec.other_names[i];
    }
    const std::string where = source.where(stored_name);
    if (!info) {
      throw ModelFileError(
          fmt::format("{}: missing tensor '{}'{}", where, spec.name,
                      spec.other_names.empty() ? "" : fmt::format(" (or '{}')", fmt::join(spec.other_names, "', '"))));
    }
    if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16) {
      throw ModelFileError(
          fmt::format("{}: tensor '{}' has dtype {}; model weights must be F32, "
                      "F16 or BF16",
                      where, stored_name, dtype_name(info->dtype)));
    }
    if (expected_dtype && info->dtype != *expected_dtype) {
      throw ModelFileError(fmt::format("{}: tensor '{}' has dtype {} but {} says torch_dtype {}", where, stored_name,
                                       dtype_name(info->dtype), config.file.string(), config.torch_dtype));
    }
    if (info->shape != spec.shape) {
      throw ModelFileError(fmt::format("{}: tensor '{}' has shape {} but {} implies {}", where, stored_name,
                                       format_shape(info->shape), config.file.string(), format_shape(spec.shape)));
    }
    at::Tensor tensor = source.read(stored_name).to(options.device, options.dtype).contiguous();
    require_finite(tensor, where, stored_name);
    tensors.emplace(spec.name, std::move(tensor));
  }
  return tensors;
}

}  // namespace

const Family* lookup_family(std::string_view model_type) {
  for (const auto& [name, accessor] : kFamilies) {
    if (name == model_type) return &accessor();
  }
  return nullptr;
}

std::vector<std::string_view> family_names() {
  std::vector<std::string_view> names;
  for (const auto& [name, accessor] : kFamilies) names.push_back(name);
  return names;
}

const Family& family_of(const ModelConfig& config) {
  const Family* family = lookup_family(config.family);
  BOUQUET_CHECK(family != nullptr, "a ModelConfig names a family that is not registered");
  return *family;
}

std::unique_ptr<Block> load_block(const ModelConfig& config, const TensorSource& source, int64_t block,
                                  const ComputeOptions& options) {
  BOUQUET_CHECK(block >= 0 && block < config.num_layers, "load_block: block index out of range");
  const Family& family = family_of(config);
  TensorMap weights = load_tensors(config, source, family.block_tensors(config, block), options);
  return family.make_block(config, block, std::move(weights), options);
}

std::unique_ptr<Head> load_head(const ModelConfig& config, const TensorSource& source, const ComputeOptions& options) {
  const Family& family = family_of(config);
  TensorMap weights = load_tensors(config, source, family.head_tensors(config), options);
  return family.make_head(config, std::move(weights), options);
}

}  // namespace bouquet::gpu

#include "gpu/prompt_file.h"

#include "gpu/errors.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <charconv>

namespace bouquet::gpu {
namespace {

constexpr const char* kFingerprintKey = "bouquet_model_fingerprint";
constexpr const char* kModeKey = "bouquet_tuning_mode";
constexpr const char* kPrefixKey = "bouquet_pre_seq_len";

}  // namespace

std::optional<TuningMode> parse_tuning_mode(std::string_view name) {
  if (name == "ptune") return TuningMode::ptune;
  if (name == "deep_ptune") return TuningMode::deep_ptune;
  return std::nullopt;
}

std::string_view to_string(TuningMode mode) { return mode == TuningMode::ptune ? "ptune" : "deep_ptune"; }

void save_prompts(const std::filesystem::path& path, const TunedPrompts& prompts) {
  std::vector<NamedTensor> tensors{{"input_prompts", prompts.input_prompts.detach()}};
  if (prompts.mode == TuningMode::deep_ptune) tensors.push_back({"deep_prompts", prompts.deep_prompts.detach()});
  write_safetensors(path, tensors, DType::F32,
                    {{"format", "pt"},
                     {kFingerprintKey, prompts.model_fingerprint},
                     {kModeKey, std::string(to_string(prompts.mode))},
                     {kPrefixKey, std::to_string(prompts.pre_seq_len)}});
}

TunedPrompts load_prompts(const std::filesystem::path& path, const std::string& expected_fingerprint,
                          const ModelConfig& model, const std::function<std::string()>& legacy_fingerprint) {
  const SafetensorsFile file(path);
  const auto fail = [&](const std::string& why) { return ModelFileError(fmt::format("{}: {}", path.string(), why)); };
  const auto& meta = file.metadata();
  for (const char* key : {kFingerprintKey, kModeKey, kPrefixKey}) {
    if (meta.count(key) == 0) throw fail(fmt::format("not a Bouquet prompts file (no '{}' metadata)", key));
  }
  TunedPrompts out;
  out.model_fingerprint = meta.at(kFingerprintKey);
  if (out.model_fingerprint != expected_fingerprint &&
      !(legacy_fingerprint && out.model_fingerprint == legacy_fingerprint())) {
    throw InputError(fmt::format("{}: prompts were trained for model {}, but this model is {}", path.string(),
                                 out.model_fingerprint, expected_fingerprint));
  }
  const auto mode = parse_tuning_mode(meta.at(kModeKey));
  if (!mode) throw fail(fmt::format("unknown tuning mode '{}'", meta.at(kModeKey)));
  out.mode = *mode;
  const std::string& prefix = meta.at(kPrefixKey);
  const auto [ptr, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), out.pre_seq_len);
  if (ec != std::errc() || ptr != prefix.data() + prefix.size() || out.pre_seq_len <= 0) {
    throw fail(fmt::format("pre_seq_len '{}' is not a positive integer", prefix));
  }
  const auto expect = [&](const char* name, std::vector<int64_t> shape) {
    const TensorInfo* info = file.find(name);
    if (!info) throw fail(fmt::format("no tensor '{}'", name));
    if (info->shape != shape) {
      throw fail(
          fmt::format("tensor '{}' is {}, this model needs {}", name, format_shape(info->shape), format_shape(shape)));
    }
    at::Tensor prompts = file.read(name).to(at::kFloat);
    require_finite(prompts, path.string(), name);
    return prompts;
  };
  out.input_prompts = expect("input_prompts", {out.pre_seq_len, model.hidden_size});
  if (out.mode == TuningMode::deep_ptune) {
    out.deep_prompts = expect("deep_prompts", {model.num_layers, out.pre_seq_len, model.hidden_size});
  }
  return out;
}

}  // namespace bouquet::gpu

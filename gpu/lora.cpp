#include "gpu/lora.h"

#include "core/check.h"
#include "core/peer_id.h"
#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";

thread_local const LoraAdapter* t_active = nullptr;

// PEFT wraps the causal-LM model (base_model.model.) around the family's own module names.
std::vector<std::string> block_prefixes(const ModelConfig& config) {
  if (config.family == "bloom") {
    return {"base_model.model.transformer.h.", "base_model.model.h."};
  }
  return {"base_model.model.model.layers."};
}

std::string canonical_block_prefix(const ModelConfig& config, int64_t block) {
  return fmt::format("{}{}.", block_prefixes(config).front(), block);
}

nlohmann::json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw ModelFileError(fmt::format("{}: cannot open the file", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw ModelFileError(fmt::format("{}: not valid JSON ({})", file.string(), e.what()));
  }
}

// The last component of a model path or hub id, ignoring trailing slashes.
std::string last_component(std::string path) {
  while (!path.empty() && path.back() == '/') path.pop_back();
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The names the served model answers to: its folder's name and config.json's _name_or_path.
std::vector<std::string> model_names(const fs::path& model_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  const fs::path absolute = fs::weakly_canonical(fs::absolute(model_dir), ec);
  names.push_back(last_component((ec ? model_dir : absolute).string()));
  const fs::path config = model_dir / "config.json";
  if (fs::exists(config)) {
    const nlohmann::json json = read_json(config);
    if (json.contains("_name_or_path") && json["_name_or_path"].is_string()) {
      const std::string name = last_component(json["_name_or_path"].get<std::string>());
      if (!name.empty()) names.push_back(name);
    }
  }
  return names;
}

const LoraModule* find_module(const std::vector<LoraModule>& modules, std::string_view name) {
  for (const auto& m : modules) {
    if (m.path == name || m.short_name() == name) return &m;
  }
  return nullptr;
}

std::string module_list(const std::vector<LoraModule>& modules) {
  std::string out;
  for (const auto& m : modules) out += (out.empty() ? "" : ", ") + m.short_name();
  return out;
}

}  // namespace

std::string LoraModule::short_name() const {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::vector<LoraModule> lora_modules(const ModelConfig& c) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  if (c.family == "llama") {
    const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    return {{"self_attn.q_proj", h, q}, {"self_attn.k_proj", h, kv}, {"self_attn.v_proj", h, kv},
            {"self_attn.o_proj", q, h}, {"mlp.gate_proj", h, i},     {"mlp.up_proj", h, i},
            {"mlp.down_proj", i, h}};
  }
  if (c.family == "bloom") {
    return {{"self_attention.query_key_value", h, 3 * h},
            {"self_attention.dense", h, h},
            {"mlp.dense_h_to_4h", h, i},
            {"mlp.dense_4h_to_h", i, h}};
  }
  throw ModelFileError(
      fmt::format("{}: LoRA adapters are not supported for model_type '{}'", c.file.string(), c.family));
}

LoraSite lora_site(const ModelConfig& config, int64_t block, const std::vector<std::string>& paths) {
  const std::vector<LoraModule> modules = lora_modules(config);
  LoraSite site;
  site.block = block;
  for (const auto& path : paths) {
    const LoraModule* m = find_module(modules, path);
    BOUQUET_CHECK(m != nullptr && m->path == path, "lora_site: a module the family does not list");
    site.parts.push_back(*m);
  }
  return site;
}

double LoraAdapterConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

LoraAdapterConfig read_lora_adapter_config(const fs::path& dir, const ModelConfig& model) {
  const fs::path file = dir / kConfigFile;
  if (!fs::exists(file)) {
    throw ModelFileError(fmt::format("{}: missing (not a PEFT LoRA adapter folder)", file.string()));
  }
  const nlohmann::json json = read_json(file);
  const auto fail = [&](const std::string& what) -> ModelFileError {
    return ModelFileError(fmt::format("{}: {}", file.string(), what));
  };
  if (!json.is_object()) throw fail("is not a JSON object");
  if (json.contains("peft_type") && json["peft_type"] != "LORA") {
    throw fail(fmt::format("peft_type is {}, only LORA adapters are supported", json["peft_type"].dump()));
  }
  LoraAdapterConfig config;
  if (!json.contains("r") || !json["r"].is_number_integer() || json["r"].get<int64_t>() <= 0) {
    throw fail("needs 'r', a positive integer");
  }
  config.r = json["r"].get<int64_t>();
  config.alpha = static_cast<double>(config.r);
  if (json.contains("lora_alpha")) {
    if (!json["lora_alpha"].is_number()) throw fail("'lora_alpha' must be a number");
    config.alpha = json["lora_alpha"].get<double>();
  }
  if (json.contains("use_rslora") && json["use_rslora"].is_boolean()) {
    config.use_rslora = json["use_rslora"].get<bool>();
  }
  if (json.value("fan_in_fan_out", false) == true) throw fail("fan_in_fan_out adapters are not supported");
  if (json.contains("bias") && json["bias"].is_string() && json["bias"] != "none") {
    throw fail(fmt::format("bias '{}' is not supported (only 'none')", json["bias"].get<std::string>()));
  }
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    if (json.contains(pattern) && json[pattern].is_object() && !json[pattern].empty()) {
      throw fail(fmt::format("'{}' is not supported", pattern));
    }
  }
  if (json.contains("base_model_name_or_path") && json["base_model_name_or_path"].is_string()) {
    config.base_model_name_or_path = json["base_model_name_or_path"].get<std::string>();
  }
  const std::vector<LoraModule> modules = lora_modules(model);
  std::vector<std::string> names;
  if (!json.contains("target_modules")) throw fail("needs 'target_modules'");
  const nlohmann::json& targets = json["target_modules"];
  if (targets.is_string()) {
    const std::string t = targets.get<std::string>();
    if (t == "all-linear") {
      for (const auto& m : modules) names.push_back(m.path);
    } else {
      names.push_back(t);  // PEFT reads a string as a regular expression; accept a plain name only
    }
  } else if (targets.is_array()) {
    for (const auto& t : targets) {
      if (!t.is_string()) throw fail("'target_modules' must list strings");
      names.push_back(t.get<std::string>());
    }
  } else {
    throw fail("'target_modules' must be a list of module names");
  }
  if (names.empty()) throw fail("'target_modules' is empty");
  std::set<std::string> seen;
  for (const auto& name : names) {
    const LoraModule* m = find_module(modules, name);
    if (m == nullptr) {
      throw fail(fmt::format("unknown target module '{}' for a {} model (known: {})", name, model.family,
                             module_list(modules)));
    }
    if (seen.insert(m->path).second) config.target_modules.push_back(m->path);
  }
  return config;
}

LoraAdapter::LoraAdapter(std::string name, fs::path dir, LoraAdapterConfig config,
                         std::map<std::pair<int64_t, std::string>, Pair> pairs)
    : name_(std::move(name)), dir_(std::move(dir)), config_(std::move(config)), pairs_(std::move(pairs)) {}

const LoraAdapter::Pair* LoraAdapter::find(int64_t block, std::string_view module) const {
  const auto it = pairs_.find({block, std::string(module)});
  return it == pairs_.end() ? nullptr : &it->second;
}

uint64_t LoraAdapter::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& [key, pair] : pairs_) {
    total += pair.a.numel() * pair.a.element_size() + pair.b.numel() * pair.b.element_size();
  }
  return total;
}

at::Tensor LoraAdapter::apply(const LoraSite& site, const at::Tensor& input, const at::Tensor& output) const {
  std::vector<at::Tensor> deltas;
  bool any = false;
  const double scale = config_.scale();
  for (const auto& part : site.parts) {
    const Pair* pair = find(site.block, part.path);
    if (pair == nullptr) {
      deltas.emplace_back();
      continue;
    }
    any = true;
    const at::Tensor x = input.to(pair->a.scalar_type());
    deltas.push_back((at::linear(at::linear(x, pair->a), pair->b) * scale).to(output.scalar_type()));
  }
  if (!any) return output;
  if (deltas.size() == 1) return output + deltas.front();
  // A fused Linear: modules without an update contribute zeros to their columns.
  for (size_t p = 0; p < deltas.size(); ++p) {
    if (deltas[p].defined()) continue;
    std::vector<int64_t> shape = output.sizes().vec();
    shape.back() = site.parts[p].out_features;
    deltas[p] = at::zeros(shape, output.options());
  }
  return output + at::cat(deltas, -1);
}

std::shared_ptr<const LoraAdapter> load_lora_adapter(const fs::path& dir, const fs::path& model_dir,
                                                     const ModelConfig& model, int64_t first_block, int64_t end_block,
                                                     const ComputeOptions& options) {
  LoraAdapterConfig config = read_lora_adapter_config(dir, model);
  const fs::path config_file = dir / kConfigFile;
  if (!config.base_model_name_or_path.empty()) {
    const std::string base = last_component(config.base_model_name_or_path);
    const std::vector<std::string> names = model_names(model_dir);
    if (std::find(names.begin(), names.end(), base) == names.end()) {
      throw ModelFileError(fmt::format("{}: the adapter was made for base model '{}', but the served model is '{}'",
                                       config_file.string(), config.base_model_name_or_path, names.front()));
    }
  }
  const fs::path file = dir / kWeightsFile;
  if (!fs::exists(file)) throw ModelFileError(fmt::format("{}: missing", file.string()));
  const SafetensorsFile weights(file);  // validates the header; ModelFileError names the file
  const std::vector<LoraModule> modules = lora_modules(model);
  const auto fail = [&](const std::string& what) -> ModelFileError {
    return ModelFileError(fmt::format("{}: {}", file.string(), what));
  };

  std::map<std::pair<int64_t, std::string>, LoraAdapter::Pair> pairs;
  std::set<std::string> used;
  for (const auto& [name, info] : weights.tensors()) {
    std::optional<std::string> rest;
    for (const auto& prefix : block_prefixes(model)) {
      if (name.rfind(prefix, 0) == 0) rest = name.substr(prefix.size());
    }
    if (!rest)
      throw fail(
          fmt::format("tensor {} is not a LoRA weight of a block; Bouquet applies only "
                      "lora_A/lora_B of block Linears",
                      name));
    std::string tail = *rest;
    bool is_a = false;
    for (const char* suffix : {".lora_A.weight", ".lora_B.weight"}) {
      const std::string s = suffix;
      if (tail.size() > s.size() && tail.compare(tail.size() - s.size(), s.size(), s) == 0) {
        is_a = s == ".lora_A.weight";
        tail = tail.substr(0, tail.size() - s.size());
        rest.reset();
        break;
      }
    }
    if (rest) throw fail(fmt::format("tensor {} is neither a lora_A nor a lora_B weight", name));
    const auto dot = tail.find('.');
    int64_t block = -1;
    try {
      size_t used_chars = 0;
      block = std::stoll(tail.substr(0, dot), &used_chars);
      if (used_chars != dot) block = -1;
    } catch (const std::exception&) {
      block = -1;
    }
    if (dot == std::string::npos || block < 0 || block >= model.num_layers) {
      throw fail(fmt::format("tensor {} names no block of the model's {}", name, model.num_layers));
    }
    const std::string path = tail.substr(dot + 1);
    const LoraModule* module = find_module(modules, path);
    if (module == nullptr || module->path != path) {
      throw fail(fmt::format("tensor {} targets unknown module '{}' (known: {})", name, path, module_list(modules)));
    }
    if (std::find(config.target_modules.begin(), config.target_modules.end(), path) == config.target_modules.end()) {
      throw fail(
          fmt::format("tensor {} targets '{}', which adapter_config.json's target_modules "
                      "does not list",
                      name, path));
    }
    const std::vector<int64_t> expected = is_a ? std::vector<int64_t>{config.r, module->in_features}
                                               : std::vector<int64_t>{module->out_features, config.r};
    if (info.shape != expected) {
      throw fail(fmt::format("tensor {} has shape {}, expected {} (r = {}, {} is {} -> {})", name,
                             format_shape(info.shape), format_shape(expected), config.r, path, module->in_features,
                             module->out_features));
    }
    if (!is_floating(info.dtype)) throw fail(fmt::format("tensor {} is not floating point", name));
    if (block < first_block || block >= end_block) continue;  // another server's blocks
    at::Tensor t = weights.read(name).to(options.device, options.dtype).contiguous();
    require_finite(t, weights.path().string(), name);
    auto& pair = pairs[{block, path}];
    (is_a ? pair.a : pair.b) = t;
    used.insert(name);
  }
  for (int64_t b = first_block; b < end_block; ++b) {
    for (const auto& path : config.target_modules) {
      for (const char* which : {"lora_A", "lora_B"}) {
        const std::string name = fmt::format("{}{}.{}.weight", canonical_block_prefix(model, b), path, which);
        const auto it = pairs.find({b, path});
        const bool present =
            it != pairs.end() && (std::string(which) == "lora_A" ? it->second.a : it->second.b).defined();
        if (!present) throw fail(fmt::format("missing tensor {}", name));
      }
    }
  }
  return std::make_shared<const LoraAdapter>(last_component(fs::absolute(dir).lexically_normal().string()), dir,
                                             std::move(config), std::move(pairs));
}

ActiveLora::ActiveLora(const LoraAdapter* adapter) : previous_(t_active) { t_active = adapter; }
ActiveLora::~ActiveLora() { t_active = previous_; }
const LoraAdapter* active_lora() { return t_active; }

LoraAdapterConfig write_tiny_adapter(const TinyAdapterConfig& t) {
  const ModelConfig model = load_model_config(t.model);
  if (t.r <= 0) throw InputError(fmt::format("--r must be positive, got {}", t.r));
  const std::vector<LoraModule> modules = lora_modules(model);
  LoraAdapterConfig config;
  config.r = t.r;
  config.alpha = t.alpha;
  std::stringstream list(t.targets);
  std::string target;
  while (std::getline(list, target, ',')) {
    if (target.empty()) continue;
    const LoraModule* m = find_module(modules, target);
    if (m == nullptr) {
      throw InputError(fmt::format("--targets: unknown module '{}' for a {} model (known: {})", target, model.family,
                                   module_list(modules)));
    }
    if (std::find(config.target_modules.begin(), config.target_modules.end(), m->path) == config.target_modules.end()) {
      config.target_modules.push_back(m->path);
    }
  }
  if (config.target_modules.empty()) throw InputError("--targets names no module");
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(fs::absolute(t.model), ec);
  config.base_model_name_or_path = (ec ? t.model : base).string();

  const core::Rng rng(t.seed);
  std::vector<NamedTensor> tensors;
  for (int64_t b = 0; b < model.num_layers; ++b) {
    for (const auto& path : config.target_modules) {
      const LoraModule& m = *find_module(modules, path);
      for (const bool is_a : {true, false}) {
        const std::string name =
            fmt::format("{}{}.{}.weight", canonical_block_prefix(model, b), path, is_a ? "lora_A" : "lora_B");
        core::Rng r = rng.derive(core::fnv1a(name));  // a sub-stream per tensor
        // A like PEFT's Kaiming-style init (unit-variance products); B, which PEFT starts at zero,
        // drawn so the update is a few percent of a typical base weight's effect.
        const int64_t rows = is_a ? t.r : m.out_features;
        const int64_t cols = is_a ? m.in_features : t.r;
        const double std = is_a ? 1.0 / std::sqrt(static_cast<double>(m.in_features))
                                : 0.3 / (std::sqrt(static_cast<double>(t.r)) * config.scale());
        std::vector<float> values(static_cast<size_t>(rows * cols));
        for (auto& v : values) v = static_cast<float>(r.normal() * std);
        tensors.push_back({name, at::tensor(values).view({rows, cols})});
      }
    }
  }
  fs::create_directories(t.out);
  write_safetensors(t.out / kWeightsFile, tensors, DType::F32);
  std::vector<std::string> short_names;
  for (const auto& path : config.target_modules) short_names.push_back(find_module(modules, path)->short_name());
  nlohmann::json json = {{"peft_type", "LORA"},
                         {"task_type", "CAUSAL_LM"},
                         {"r", config.r},
                         {"lora_alpha", config.alpha},
                         {"lora_dropout", 0.0},
                         {"bias", "none"},
                         {"fan_in_fan_out", false},
                         {"inference_mode", true},
                         {"target_modules", short_names},
                         {"base_model_name_or_path", config.base_model_name_or_path}};
  std::ofstream out(t.out / kConfigFile);
  out << json.dump(2) << "\n";
  if (!out.flush()) throw ModelFileError(fmt::format("{}: write failed", (t.out / kConfigFile).string()));
  return config;
}

}  // namespace bouquet::gpu

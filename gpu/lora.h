// LoRA adapters in PEFT's layout, applied per request on top of shared base weights.
//
// An adapter folder holds adapter_config.json (r, lora_alpha, target_modules,
// base_model_name_or_path; use_rslora honoured) and adapter_model.safetensors with PEFT's names:
//   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight   (Llama; lora_B likewise)
//   base_model.model.transformer.h.N.self_attention.query_key_value.lora_A.weight   (BLOOM)
// A targeted Linear then computes W x + s * B (A x), s = lora_alpha / r (alpha / sqrt(r) with
// use_rslora), A: [r, in], B: [out, r].
//
// What it promises:
// - load_lora_adapter() reads only the tensors of blocks [first_block, end_block) and converts them
//   to the compute dtype and device once. Every mismatch is a ModelFileError naming the file: an
//   unknown target module, a base model other than the served one, a tensor with the wrong shape
//   or rank, a missing lora_A/lora_B tensor of a targeted module, a tensor Bouquet cannot apply
//   (embeddings, biases, modules_to_save), a missing or corrupt file.
// - The base weights are never modified: several adapters can be loaded next to one model, and a
//   call applies at most one, the one an ActiveLora on its thread names (none = the base model).
// - Autograd flows through the update, so forward/backward with an adapter differentiate it.
#pragma once

#include "gpu/compute_options.h"
#include "gpu/model_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bouquet::gpu {

// A Linear a family exposes to LoRA, by PEFT's module path inside a block.
struct LoraModule {
  std::string path;  // "self_attn.q_proj", "mlp.dense_h_to_4h", ...
  int64_t in_features = 0;
  int64_t out_features = 0;
  std::string short_name() const;  // the last component: "q_proj"
};

// The modules of `config`'s family, with their shapes (ModelFileError for a family without LoRA).
std::vector<LoraModule> lora_modules(const ModelConfig& config);

// Where a Linear sits, for LoRA: its block and the modules whose outputs it computes, in order
// (several when a family fuses them, as Llama fuses q/k/v and gate/up); each part takes
// `out_features` consecutive output columns.
struct LoraSite {
  int64_t block = -1;
  std::vector<LoraModule> parts;
  bool empty() const { return parts.empty(); }
};

// The site of the Linear of `block` that computes `paths` (module paths of lora_modules(config)).
LoraSite lora_site(const ModelConfig& config, int64_t block, const std::vector<std::string>& paths);

struct LoraAdapterConfig {
  int64_t r = 0;
  double alpha = 0.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules;  // module paths of lora_modules(), deduplicated
  std::string base_model_name_or_path;
  double scale() const;
};

// Reads and checks `dir/adapter_config.json` against `model` (targets known, r > 0).
LoraAdapterConfig read_lora_adapter_config(const std::filesystem::path& dir, const ModelConfig& model);

class LoraAdapter {
 public:
  struct Pair {
    at::Tensor a;  // [r, in] in the compute dtype
    at::Tensor b;  // [out, r]
  };

  LoraAdapter(std::string name, std::filesystem::path dir, LoraAdapterConfig config,
              std::map<std::pair<int64_t, std::string>, Pair> pairs);

  const std::string& name() const { return name_; }
  const std::filesystem::path& dir() const { return dir_; }
  const LoraAdapterConfig& config() const { return config_; }
  // nullptr when this adapter does not touch `module` of `block`.
  const Pair* find(int64_t block, std::string_view module) const;
  uint64_t weight_bytes() const;

  // `output` = the base Linear's result on `input`; returns it plus this adapter's update of the
  // site's modules (output itself when none of them is targeted).
  at::Tensor apply(const LoraSite& site, const at::Tensor& input, const at::Tensor& output) const;

 private:
  std::string name_;
  std::filesystem::path dir_;
  LoraAdapterConfig config_;
  std::map<std::pair<int64_t, std::string>, Pair> pairs_;  // (block, module path)
};

// Loads the adapter in `dir` for blocks [first_block, end_block) of the model in `model_dir`
// (`model` = its config). The adapter's name is the folder's name.
std::shared_ptr<const LoraAdapter> load_lora_adapter(const std::filesystem::path& dir,
                                                     const std::filesystem::path& model_dir, const ModelConfig& model,
                                                     int64_t first_block, int64_t end_block,
                                                     const ComputeOptions& options);

// The adapter Linears apply on this thread while this guard lives (nullptr: the base model).
// Guards nest; the previous one is restored on destruction.
class ActiveLora {
 public:
  explicit ActiveLora(const LoraAdapter* adapter);
  ~ActiveLora();
  ActiveLora(const ActiveLora&) = delete;
  ActiveLora& operator=(const ActiveLora&) = delete;

 private:
  const LoraAdapter* previous_;
};

const LoraAdapter* active_lora();

// `bouquet make-tiny-adapter`: a random adapter for the model in `model` (B non-zero, so it
// changes outputs), drawn from core::Rng with per-tensor sub-streams of `seed`.
struct TinyAdapterConfig {
  std::filesystem::path model;
  std::filesystem::path out;
  int64_t r = 8;
  double alpha = 16.0;
  std::string targets = "q_proj,v_proj";  // comma-separated module names
  uint64_t seed = 0;
};

// Writes out/adapter_config.json and out/adapter_model.safetensors (f32); returns the config.
LoraAdapterConfig write_tiny_adapter(const TinyAdapterConfig& config);

}  // namespace bouquet::gpu

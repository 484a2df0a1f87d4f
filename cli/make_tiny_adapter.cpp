// `bouquet make-tiny-adapter`: parse flags into TinyAdapterConfig and write a random LoRA adapter
// in PEFT's layout for a model folder.
#include "cli/command.h"
#include "gpu/lora.h"

#include <fmt/core.h>

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration make_tiny_adapter_command{
    "make-tiny-adapter", "Write a random LoRA adapter (PEFT layout) for a model folder", [](CLI::App& sub) {
      auto config = std::make_shared<gpu::TinyAdapterConfig>();
      sub.add_option("--model", config->model, "Model folder the adapter is for")->required();
      sub.add_option("--out", config->out, "Adapter folder to write (its name is the adapter's)")->required();
      sub.add_option("--r", config->r, "LoRA rank")->capture_default_str();
      sub.add_option("--alpha", config->alpha, "lora_alpha (the update is scaled by alpha / r)")->capture_default_str();
      sub.add_option("--targets", config->targets,
                     "Comma-separated modules (llama: q_proj,k_proj,v_proj,o_proj,gate_proj,"
                     "up_proj,down_proj; bloom: query_key_value,dense,dense_h_to_4h,dense_4h_to_h)")
          ->capture_default_str();
      sub.add_option("--seed", config->seed, "Seed of the weights")->capture_default_str();
      return [config] {
        const gpu::LoraAdapterConfig adapter = gpu::write_tiny_adapter(*config);
        fmt::print("wrote {}: r {}, alpha {}, {} target modules, base {}\n", config->out.string(), adapter.r,
                   adapter.alpha, adapter.target_modules.size(), adapter.base_model_name_or_path);
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli

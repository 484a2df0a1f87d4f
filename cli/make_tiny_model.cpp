// `bouquet make-tiny-model`: parse flags into TinyModelConfig and write the folder.
#include "cli/command.h"
#include "gpu/family.h"
#include "gpu/tiny_model.h"

#include <fmt/core.h>

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration make_tiny_model_command{
    "make-tiny-model", "Write a small random-weight model folder in Hugging Face layout", [](CLI::App& sub) {
      auto config = std::make_shared<gpu::TinyModelConfig>();
      sub.add_option("--family", config->family, "Model family (config.json's model_type)")->capture_default_str();
      sub.add_option("--out", config->out, "Folder to write")->required();
      sub.add_option("--layers", config->layers, "Transformer blocks")->capture_default_str();
      sub.add_option("--hidden", config->hidden, "Hidden size")->capture_default_str();
      sub.add_option("--intermediate", config->intermediate, "MLP size (bloom: always 4 x hidden)")
          ->capture_default_str();
      sub.add_option("--heads", config->heads, "Attention heads")->capture_default_str();
      sub.add_option("--kv-heads", config->kv_heads, "Key/value heads (bloom: = heads)")->capture_default_str();
      sub.add_option("--vocab", config->vocab, "Vocabulary (tokenizer pieces)")->capture_default_str();
      sub.add_option("--dtype", config->dtype, "Stored dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--shards", config->shards, "Weight files (> 1 writes an index)")->capture_default_str();
      sub.add_flag("--tie-embeddings", config->tie_embeddings, "LM head = embeddings (bloom: always)");
      sub.add_option("--rope-scaling", config->rope_scaling, "llama3 for Llama-3 RoPE scaling");
      sub.add_option("--tensor-prefix", config->tensor_prefix,
                     "bloom: 'transformer.' to name tensors as BloomForCausalLM saves them");
      sub.add_option("--seed", config->seed, "Seed of the weights")->capture_default_str();
      auto no_tokenizer = std::make_shared<bool>(false);
      sub.add_flag("--no-tokenizer", *no_tokenizer,
                   "Weights and config only (a benchmark's model: any --vocab; the trained tokenizer "
                   "stops at a few thousand pieces)");
      return [config, no_tokenizer] {
        const gpu::ModelConfig model =
            *no_tokenizer ? gpu::write_tiny_checkpoint(*config) : gpu::make_tiny_model(*config);
        fmt::print("wrote {}: {} {} blocks, hidden {}, vocab {}, {}\n", config->out.string(), model.family,
                   model.num_layers, model.hidden_size, model.vocab_size, model.torch_dtype);
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli

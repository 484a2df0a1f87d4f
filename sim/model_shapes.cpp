#include "sim/model_shapes.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace bouquet::sim {
namespace {

// Values copied from each model's config.json on the Hugging Face hub.
const std::array<ModelShape, 6>& catalog() {
  static const std::array<ModelShape, 6> models = {{
      // bigscience/bloom: n_embed 14336, n_layer 70, n_head 112, vocab 250880, 4h GELU MLP.
      {.name = "bloom-176b",
       .hidden = 14336,
       .num_blocks = 70,
       .heads = 112,
       .kv_heads = 112,
       .intermediate = 4 * 14336,
       .vocab = 250880,
       .linear_bias = true,
       .tied_embeddings = true},
      // bigscience/bloom-7b1: hidden 4096, n_layer 30, n_head 32.
      {.name = "bloom-7b1",
       .hidden = 4096,
       .num_blocks = 30,
       .heads = 32,
       .kv_heads = 32,
       .intermediate = 4 * 4096,
       .vocab = 250880,
       .linear_bias = true,
       .tied_embeddings = true},
      // meta-llama/Llama-2-70b-hf: 8192, 80 layers, 64 heads, 8 KV heads, 28672, vocab 32000.
      {.name = "llama-2-70b",
       .hidden = 8192,
       .num_blocks = 80,
       .heads = 64,
       .kv_heads = 8,
       .intermediate = 28672,
       .vocab = 32000,
       .gated_mlp = true,
       .layer_norm = false},
      // meta-llama/Llama-2-7b-hf: 4096, 32 layers, 32 heads, 11008.
      {.name = "llama-2-7b",
       .hidden = 4096,
       .num_blocks = 32,
       .heads = 32,
       .kv_heads = 32,
       .intermediate = 11008,
       .vocab = 32000,
       .gated_mlp = true,
       .layer_norm = false},
      // tiiuae/falcon-180B: 14848, 80 layers, 232 heads, 8 KV heads, 4h GELU MLP, vocab 65024,
      // two LayerNorms per block (new decoder architecture), no linear biases.
      {.name = "falcon-180b",
       .hidden = 14848,
       .num_blocks = 80,
       .heads = 232,
       .kv_heads = 8,
       .intermediate = 4 * 14848,
       .vocab = 65024,
       .tied_embeddings = true},
      // mistralai/Mixtral-8x7B-v0.1: 4096, 32 layers, 32 heads, 8 KV heads, 8 experts of 14336,
      // 2 experts per token.
      {.name = "mixtral-8x7b",
       .hidden = 4096,
       .num_blocks = 32,
       .heads = 32,
       .kv_heads = 8,
       .intermediate = 14336,
       .vocab = 32000,
       .experts = 8,
       .experts_per_token = 2,
       .gated_mlp = true,
       .layer_norm = false},
  }};
  return models;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

int64_t ModelShape::attention_params() const {
  int64_t weights = 2 * hidden * hidden + 2 * hidden * kv_dim();  // q, o and k, v
  int64_t biases = linear_bias ? 2 * hidden + 2 * kv_dim() : 0;
  return weights + biases;
}

int64_t ModelShape::expert_params() const {
  int64_t weights = (gated_mlp ? 3 : 2) * hidden * intermediate;
  int64_t biases = linear_bias ? intermediate + hidden : 0;
  return weights + biases;
}

int64_t ModelShape::shared_params() const {
  int64_t norms = 2 * hidden * (layer_norm ? 2 : 1);
  int64_t router = experts > 1 ? hidden * experts : 0;
  return attention_params() + norms + router;
}

int64_t ModelShape::params_per_block() const { return shared_params() + experts * expert_params(); }

int64_t ModelShape::active_params_per_block(int64_t tokens) const {
  int64_t touched = std::min(experts, std::max<int64_t>(1, tokens) * experts_per_token);
  return shared_params() + touched * expert_params();
}

int64_t ModelShape::client_params() const { return vocab * hidden * (tied_embeddings ? 1 : 2); }

int64_t ModelShape::linear_io_values_per_token() const {
  int64_t attention = (hidden + hidden) * 2 + (hidden + kv_dim()) * 2;
  int64_t per_expert = (gated_mlp ? 3 : 2) * (hidden + intermediate);
  int64_t routed = std::min(experts, experts_per_token);  // a token visits its own experts only
  return attention + routed * per_expert;
}

const ModelShape* find_model(std::string_view name) {
  std::string key = lower(name);
  for (const auto& model : catalog()) {
    if (model.name == key) return &model;
  }
  return nullptr;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& model : catalog()) names.push_back(model.name);
  return names;
}

}  // namespace bouquet::sim

// Transformer shapes of the models the simulator knows, taken from their published config.json
// files. The simulator never sees weights: a block's cost follows from these numbers alone, so
// they must match the real checkpoints (tests compare the totals with the published sizes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim {

struct ModelShape {
  std::string name;
  int64_t hidden = 0;
  int64_t num_blocks = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;      // grouped-query attention shares K/V across heads
  int64_t intermediate = 0;  // MLP width of one expert
  int64_t vocab = 0;
  int64_t experts = 1;            // mixture-of-experts MLPs per block (1: dense)
  int64_t experts_per_token = 1;  // routed experts each token visits
  bool gated_mlp = false;         // SwiGLU: three matrices instead of two
  bool linear_bias = false;       // biases on every linear layer (BLOOM)
  bool layer_norm = true;         // LayerNorm (weight + bias) rather than RMSNorm (weight only)
  bool tied_embeddings = false;   // LM head shares the input embedding matrix

  int64_t head_dim() const { return hidden / heads; }
  int64_t kv_dim() const { return kv_heads * head_dim(); }
  int64_t attention_params() const;
  int64_t expert_params() const;
  // Attention, norms and router: what every token reads whatever its experts.
  int64_t shared_params() const;
  // Every parameter of one transformer block (all experts).
  int64_t params_per_block() const;
  // Parameters of one block that `tokens` tokens read together: attention, norms, router and the
  // experts they are routed to (at most all of them; assumes routing spreads over experts).
  int64_t active_params_per_block(int64_t tokens) const;
  // Embedding matrix plus, when untied, the LM head.
  int64_t client_params() const;
  int64_t total_params() const { return params_per_block() * num_blocks + client_params(); }
  // Sum over the block's matrices of (input width + output width): the activation values one
  // token reads and writes through the linear layers.
  int64_t linear_io_values_per_token() const;
};

// The model called `name` (case-insensitive), or nullptr.
const ModelShape* find_model(std::string_view name);
std::vector<std::string> model_names();

}  // namespace bouquet::sim

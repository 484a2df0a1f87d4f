// How many blocks a server holds and how much cache it keeps, from its memory: the one rule that
// `bouquet serve` (sizing --num-blocks from the machine) and the simulator (sizing a scenario's
// unpinned servers from their device) both apply.
//
// A server keeps `workspace_share` of its memory back for activations and the allocator. Each block
// costs its weights plus room for `cache_tokens_per_block` tokens of KV cache; as many blocks fit
// as the rest holds, at least one (a server that fits none still serves one, slowly, rather than
// none) and at most the model's. The cache then takes whatever memory the blocks leave.
#pragma once

#include <cstdint>

namespace bouquet::core {

struct ServerMemory {
  double memory_bytes = 0;           // what the server may use (a GPU's memory, a CPU's budget)
  double workspace_share = 0.1;      // of memory_bytes, kept back; in [0, 1)
  double block_weight_bytes = 0;     // one block's weights as stored (quantized: fewer)
  double cache_bytes_per_token = 0;  // one block's KV cache for one token
};

uint32_t blocks_that_fit(const ServerMemory& memory, uint64_t cache_tokens_per_block, uint32_t model_blocks);

// Tokens of cache per block that `blocks` blocks leave room for (0 when the weights alone overflow).
uint64_t cache_tokens_that_fit(const ServerMemory& memory, uint32_t blocks);

}  // namespace bouquet::core

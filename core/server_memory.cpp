#include "core/server_memory.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace bouquet::core {
namespace {

double usable_bytes(const ServerMemory& memory) {
  BOUQUET_CHECK(memory.workspace_share >= 0 && memory.workspace_share < 1, "workspace share outside [0, 1)");
  return std::max(0.0, (1 - memory.workspace_share) * memory.memory_bytes);
}

}  // namespace

uint32_t blocks_that_fit(const ServerMemory& memory, uint64_t cache_tokens_per_block, uint32_t model_blocks) {
  const double per_block =
      memory.block_weight_bytes + static_cast<double>(cache_tokens_per_block) * memory.cache_bytes_per_token;
  if (!(per_block > 0)) return model_blocks;
  const double fit = std::floor(usable_bytes(memory) / per_block);
  return static_cast<uint32_t>(std::clamp(fit, 1.0, static_cast<double>(std::max<uint32_t>(model_blocks, 1))));
}

uint64_t cache_tokens_that_fit(const ServerMemory& memory, uint32_t blocks) {
  const double n = static_cast<double>(blocks);
  const double per_token = n * memory.cache_bytes_per_token;
  if (!(per_token > 0)) return 0;
  const double free_bytes = usable_bytes(memory) - n * memory.block_weight_bytes;
  // Bounded so that a tiny per-token cost cannot overflow the cast.
  return static_cast<uint64_t>(std::clamp(std::floor(free_bytes / per_token), 0.0, 9.0e18));
}

}  // namespace bouquet::core

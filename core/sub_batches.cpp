#include "core/sub_batches.h"

#include <algorithm>

#include "core/check.h"

namespace bouquet::core {

std::vector<uint32_t> split_batch(uint32_t batch, uint32_t sequence_tokens, uint32_t max_tokens) {
  BOUQUET_CHECK(batch > 0 && sequence_tokens > 0, "a pass needs sequences with positions");
  const uint32_t per = max_tokens == 0 ? batch : std::max<uint32_t>(1, max_tokens / sequence_tokens);
  std::vector<uint32_t> sizes;
  for (uint32_t left = batch; left > 0; left -= std::min(left, per)) sizes.push_back(std::min(left, per));
  return sizes;
}

}  // namespace bouquet::core

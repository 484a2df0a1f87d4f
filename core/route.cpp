#include "core/route.h"

#include <fmt/core.h>
#include <algorithm>

namespace bouquet::core {

bool chain_covers(const Chain& chain, BlockSpan blocks) {
  uint32_t at = blocks.begin;
  for (const Hop& hop : chain) {
    if (hop.span.begin != at || hop.span.empty()) return false;
    at = hop.span.end;
  }
  return !chain.empty() && at == blocks.end;
}

Result<Chain> plan_chain_greedy(std::span<const ServerRecord> records, const std::string& model_id, BlockSpan blocks,
                                std::span<const PeerId> avoid, const std::string& adapter) {
  Chain chain;
  uint32_t at = blocks.begin;
  while (at < blocks.end) {
    const ServerRecord* best = nullptr;
    for (const ServerRecord& r : records) {
      if (r.state != ServerState::online || r.model_id != model_id || !r.span.contains(at)) continue;
      if (std::find(avoid.begin(), avoid.end(), r.peer) != avoid.end()) continue;
      if (!adapter.empty() && std::find(r.adapters.begin(), r.adapters.end(), adapter) == r.adapters.end()) {
        continue;  // a LoRA session: this server would refuse it
      }
      if (!best || r.span.end > best->span.end || (r.span.end == best->span.end && r.peer < best->peer)) {
        best = &r;
      }
    }
    if (!best) {
      return Error{ErrorCode::no_route, fmt::format("no online server of {} holds block {}{}", model_id, at,
                                                    adapter.empty() ? "" : fmt::format(" with adapter '{}'", adapter))};
    }
    const uint32_t end = std::min(best->span.end, blocks.end);
    chain.push_back(Hop{best->peer, BlockSpan{at, end}});
    at = end;
  }
  return chain;
}

}  // namespace bouquet::core

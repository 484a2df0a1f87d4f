// Printable names of the small value types (ids, spans, enums).
#include <fmt/core.h>

#include "core/block_span.h"
#include "core/compute.h"
#include "core/peer_id.h"
#include "core/recovery.h"
#include "core/server_record.h"

namespace bouquet::core {

std::string PeerId::to_string() const { return fmt::format("{:016x}", value); }

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::string BlockSpan::to_string() const { return fmt::format("[{}, {})", begin, end); }

std::string_view to_string(ComputeKind kind) {
  switch (kind) {
    case ComputeKind::inference:
      return "inference";
    case ComputeKind::forward:
      return "forward";
    case ComputeKind::backward:
      return "backward";
  }
  return "unknown";
}

std::string_view to_string(ServerState state) {
  switch (state) {
    case ServerState::joining:
      return "joining";
    case ServerState::online:
      return "online";
    case ServerState::offline:
      return "offline";
  }
  return "unknown";
}

std::string_view to_string(RecoveryPolicy policy) {
  switch (policy) {
    case RecoveryPolicy::replay:
      return "replay";
    case RecoveryPolicy::restart:
      return "restart";
    case RecoveryPolicy::cacheless:
      return "cacheless";
    case RecoveryPolicy::none:
      return "none";
    case RecoveryPolicy::restart_from_scratch:
      return "restart_from_scratch";
  }
  return "unknown";
}

std::optional<RecoveryPolicy> parse_recovery_policy(std::string_view name) {
  for (auto p : {RecoveryPolicy::replay, RecoveryPolicy::restart, RecoveryPolicy::cacheless, RecoveryPolicy::none,
                 RecoveryPolicy::restart_from_scratch}) {
    if (to_string(p) == name) return p;
  }
  return std::nullopt;
}

}  // namespace bouquet::core

// How a client session survives a server failing mid-generation, and the record of each
// recovery (`generate --json` prints them as `recoveries`).
//
// Policies (InferenceSessionConfig::recovery; `generate --recovery`):
//   replay     ban the server, plan a replacement chain for exactly its span, open sessions
//              there and replay that span's history by absolute position; other spans keep
//              their caches. The default.
//   restart    ban the server and start over from the prompt on a fresh chain for all blocks
//              (a baseline: the whole history of the first span is resent through every hop).
//   cacheless  every step resends the whole sequence to every hop (no server keeps anything
//              between steps); a failed hop is replaced and simply gets the next full sequence.
//   none       the first failure ends the session (SessionFailed), as before recovery existed.
//   restart_from_scratch
//              the reference paper's "caching with restarts" baseline: ban the server, drop every
//              hop and everything generated so far (SessionRestarted), re-open on a fresh chain
//              for all blocks, and let the loop generate again from its first step. A failure
//              between steps does this when the next step is asked for (a generation that has
//              ended loses nothing). Before the session is ready it behaves as restart.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "core/route.h"
#include "core/time.h"

namespace bouquet::core {

enum class RecoveryPolicy : uint8_t { replay = 0, restart = 1, cacheless = 2, none = 3, restart_from_scratch = 4 };

// "replay", "restart", "cacheless", "none", "restart_from_scratch"
std::string_view to_string(RecoveryPolicy policy);
std::optional<RecoveryPolicy> parse_recovery_policy(std::string_view name);

struct Recovery {
  BlockSpan span;      // the blocks re-planned: the failed hop's (all blocks under restart)
  PeerId failed_peer;  // the server that failed
  Error cause;         // how it failed (timeout, peer_unreachable, an error reply, ...)
  Chain replacement;   // the hops that took over (empty while none was found)
  // Positions of earlier steps the replacement had to process (restart_from_scratch: the positions
  // lost, which the loop generates again).
  uint32_t positions_replayed = 0;
  Time failed_at = 0;         // when the failure was noticed
  Time finished_at = kNever;  // when the replacement had caught up with the session
  bool succeeded = false;     // false while under way, or if the replacement failed too

  double duration_s() const { return finished_at - failed_at; }
};

}  // namespace bouquet::core

// Fault drills for recovery: one seeded generation through a virtual swarm with spare
// servers, faults injected at random steps, and every check a user of `generate` would care
// about. The same drill runs 1,000 times in core_tests and 10,000 times in core_slow_tests.
//
// A drill: 12 blocks cut into 2-4 spans, each held by a fast primary server (the min-latency
// planner picks those first) and by spares: one holding the span whole, which no fault touches,
// and one or two splitting it (so a replacement may take several servers). Faults, 1 to 3 per
// drill: a server crashing at its k-th step before or after replying (peers told or not), a
// slow reply (shorter or longer than the reply timeout), a lost message, and spares that crash
// as soon as they are used (the replacement failing too). Sizes, compression and the message
// size limit vary too.
//
// Checks: the generation completes with outputs identical to the fault-free reference; under
// `replay`, each recovery re-plans exactly the failed hop's span, its replacement receives each
// position once (positions_replayed of them from earlier steps), and every server session that
// did not fail receives each position exactly once (nobody else replays anything); under
// `cacheless` every step starts over at position 0.
#pragma once

#include <cstdint>
#include <string>

#include "core/recovery.h"

namespace bouquet::test {

struct DrillStats {
  uint64_t drills = 0;
  uint64_t faults = 0;
  uint64_t recoveries = 0;
  uint64_t drills_recovered_twice = 0;  // two recoveries or more in one generation
  uint64_t replacements_failed = 0;     // recoveries whose replacement failed too
  uint64_t multi_server_replacements = 0;
  uint64_t positions_replayed = 0;
};

// Runs drill `seed` under `policy`; returns "" when every check passes, else what went wrong.
std::string run_fault_drill(uint64_t seed, core::RecoveryPolicy policy, DrillStats& stats);

// Runs `count` drills (seeds first_seed, first_seed + 1, ...) under `policy`, failing the current
// test for each broken one with the command that reproduces it alone. BOUQUET_DRILLS, when set,
// overrides `count`.
void run_fault_drills(uint64_t first_seed, uint64_t count, core::RecoveryPolicy policy, DrillStats& stats);

}  // namespace bouquet::test

// Churn drills: a swarm whose servers choose their spans through the directory (the core's
// BalancerNode), under faults, serving generations and fine-tuning passes at once; then the
// faults stop and the swarm must serve everyone again. The same drill runs a few hundred times in
// core_tests and thousands of times in core_slow_tests.
//
// A drill: 12 blocks; 4 to 6 balanced servers of 3 to 6 blocks each (uneven speeds) join in the
// first seconds and rebalance every few seconds. During the fault phase (the first 60 s):
// servers crash (silently or noticed by their peers), stop cleanly, or crash at their k-th step;
// new servers join (so others move); messages are lost at random. Enough servers survive to hold
// the model twice over. Generations (replay recovery) and passes (forward and backward) start at
// random times in it. Then the faults stop.
//
// Safety: every output ever produced equals the fault-free run's (a generation's steps, a pass's
// outputs and gradients): a request may fail during faults, with a typed error, never be wrong.
// Liveness: a settling time after the last fault every block is served again, every request of
// the fault phase has ended (done or failed, none hanging), and new generations and passes all
// complete with the fault-free outputs. At the end no surviving server holds a cache of a
// session that ended.
#pragma once

#include <cstdint>
#include <string>

namespace bouquet::test {

struct ChurnStats {
  uint64_t drills = 0;
  uint64_t crashes = 0;
  uint64_t stops = 0;
  uint64_t joins = 0;
  uint64_t moves = 0;                  // balanced servers moving to another span
  uint64_t generations = 0;            // of the fault phase
  uint64_t generations_failed = 0;     // of those, ended with an error (allowed)
  uint64_t generation_recoveries = 0;  // hops replaced, all generations
  uint64_t passes = 0;                 // of the fault phase
  uint64_t passes_failed = 0;
  uint64_t pass_recoveries = 0;
};

// Runs drill `seed`; returns "" when every check passes, else what went wrong.
std::string run_churn_drill(uint64_t seed, ChurnStats& stats);

// Runs `count` drills (seeds first_seed, first_seed + 1, ...), failing the current test for each
// broken one with the command that reproduces it alone. BOUQUET_DRILLS, when set, overrides `count`.
void run_churn_drills(uint64_t first_seed, uint64_t count, ChurnStats& stats);

}  // namespace bouquet::test

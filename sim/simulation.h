// Runs one scenario (one row of a scenario file) in SimGrid and returns what its clients measured.
// The platform, one actor per host, the core's state machines on servers and clients, the cost
// model for every computation and the modelled directory: see the headers of each piece.
#pragma once

#include "sim/run_result.h"
#include "sim/scenario.h"

namespace bouquet::sim {

// Runs in this process, which must not have run a simulation before (SimGrid's one engine).
RunResult simulate(const Scenario& scenario);
// Runs in a child process (isolated_run.h): callable any number of times.
RunResult simulate_isolated(const Scenario& scenario);

}  // namespace bouquet::sim

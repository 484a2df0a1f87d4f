// `bouquet sim`: load a scenario file, calibrate what it says to calibrate, run every row in its
// own simulation, print the results table (simulated figure, published figure, relative error)
// and optionally write them as JSON. Standard output is deterministic for a given scenario and
// seed (it is what scenarios/*.expected hold); wall-clock timings go to standard error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bouquet::sim {

struct SimCommandConfig {
  std::string scenario;          // path of the YAML file
  std::optional<uint64_t> seed;  // replaces the file's seed
  std::vector<std::string> set;  // key.path=value overrides, in order
  std::string out;               // JSON results file; "" for none
  // Instead of running `scenario`: fit the profile file it names (profile_fit.h), or run every
  // scenario of the folder it names and print the summary (summary.h).
  bool calibrate = false;
  bool summary = false;
};

// Returns the process exit status (0: every row ran; clients that did not finish are reported in
// the table). Bad scenarios throw ScenarioError, failed simulations SimulationError.
int run_sim_command(const SimCommandConfig& config);

}  // namespace bouquet::sim

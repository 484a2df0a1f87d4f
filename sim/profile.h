// An implementation profile: whose software runs on the simulated hardware. Devices give the
// datasheet peaks (devices.h); a profile gives what one implementation reaches of them, per weight
// format (compute_eff, memory_eff, block_overhead_s, request_overhead_s: cost_model.h), and what
// a failure costs it (detection, reconnecting, re-routing). Each scenario names one
// (`profile: petals` reads profiles/petals.yaml beside the scenario) and may override any figure.
//
// Every parameter is either a fact from outside, cited (`source:`), or fitted: `fitted:` lists the
// calibration rows ("SCENARIO/ROW", scenario files beside the profiles folder) that
// `bouquet sim --calibrate` fits it on (calibration.h). Those rows are the profile's calibration
// rows; every other row of every scenario is a prediction.
#pragma once

#include "sim/cost_model.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bouquet::sim {

// What a failed server costs the client before its recovery starts, in seconds.
struct FailureCost {
  double detection_s = 0;  // noticing the failure (an error reply, a broken stream, a timeout)
  double reconnect_s = 0;  // closing the broken connection, opening a new one
  double reroute_s = 0;    // refreshing the swarm view and planning a replacement
  // Beyond the replay's own compute (which the cost model charges), per position of the history
  // the client holds when a replaying recovery starts: what rebuilding a cache costs the
  // implementation on top of one batched prefill.
  double replay_s_per_position = 0;

  // Before the recovery of a session holding `history_positions` positions starts.
  double before_recovery_s(int64_t history_positions) const {
    return detection_s + reconnect_s + reroute_s + replay_s_per_position * static_cast<double>(history_positions);
  }
};

// One figure of the profile. A YAML alias (`request_overhead_s: *request`) makes several keys one
// parameter: one value, cited or fitted once (a request's path does not depend on the format).
struct ProfileParameter {
  std::string key;                   // "int8.compute_eff", "failure.detection_s"
  std::vector<std::string> aliases;  // other keys holding the same node
  double value = 0;
  std::string source;             // a fact's citation ("" when fitted)
  std::vector<std::string> rows;  // a fitted parameter's calibration rows
  int line = 0;                   // of the value in the profile file (1-based)
  int column = 0;
  double lo = 0, hi = 1;  // its range
  bool fitted() const { return !rows.empty(); }
};

struct Profile {
  std::string name;
  std::string path;
  std::string procedure;  // how its fitted parameters are fitted, as the file says
  std::vector<ProfileParameter> parameters;
  std::map<std::string, int> lines;  // of the sections: "formats", "formats.int8", "failure" (1-based)

  // The parameter holding `key` (as its key or an alias), or nullptr.
  // The parameter holding `key` (as its key or an alias), or nullptr.
  const ProfileParameter* find(const std::string& key) const;
  // Every fitted parameter's rows, each once, in the order the file names them.
  std::vector<std::string> calibration_rows() const;
  bool is_calibration_row(const std::string& scenario, const std::string& row) const;
};

// Reads and checks a profile file; throws ScenarioError (`file:line:column: key: problem`).
Profile load_profile(const std::string& path);
// The profile `name` for a scenario at `scenario_path`: profiles/NAME.yaml in its folder.
std::string profile_path(const std::string& scenario_path, const std::string& name);

// The parameter names of one weight format, in file order.
inline constexpr const char* kFormatParameters[] = {"compute_eff", "memory_eff", "block_overhead_s",
                                                    "request_overhead_s"};
inline constexpr const char* kClientParameters[] = {"history_copy_bytes_per_s", "hop_overhead_s"};
inline constexpr const char* kFailureParameters[] = {"detection_s", "reconnect_s", "reroute_s",
                                                     "replay_s_per_position"};

// Sets a named figure ("int8.memory_eff", "failure.reroute_s") of a cost or failure config.
void set_parameter(const std::string& key, double value, CostModelConfig& cost, FailureCost& failure);

// Rewrites the `value:` of each parameter in `values` on its line of the profile file, keeping
// everything else (comments, layout) as it is.
void write_profile_values(const Profile& profile, const std::map<std::string, double>& values);

}  // namespace bouquet::sim

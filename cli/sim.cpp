// `bouquet sim SCENARIO.yaml [--seed S] [--set key=value ...] [--out FILE.json]`,
// `bouquet sim --calibrate PROFILE.yaml`, `bouquet sim --summary FOLDER`
#include "cli/command.h"
#include "sim/sim_command.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration sim_command{
    "sim", "Simulate a swarm scenario in SimGrid and compare it with published figures", [](CLI::App& sub) {
      auto config = std::make_shared<sim::SimCommandConfig>();
      sub.add_option("scenario", config->scenario,
                     "Scenario YAML file (with --calibrate: a profile file; with --summary: a folder of scenarios)")
          ->required();
      auto* calibrate = sub.add_flag("--calibrate", config->calibrate,
                                     "Fit the profile's fitted parameters on its calibration rows and write them");
      sub.add_flag("--summary", config->summary, "Run every scenario of the folder and print one table")
          ->excludes(calibrate);
      sub.add_option("--seed", config->seed, "Replace the scenario's seed");
      sub.add_option("--set", config->set, "Override a scenario key: key.path=value (repeatable)")
          ->allow_extra_args(false);
      sub.add_option("--out", config->out, "Write the results as JSON to this file");
      return [config] { return sim::run_sim_command(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

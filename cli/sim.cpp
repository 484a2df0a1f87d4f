// `bouquet sim SCENARIO.yaml [--seed S] [--set key=value ...] [--out FILE.json]`
#include "cli/command.h"
#include "sim/sim_command.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration sim_command{
    "sim", "Simulate a swarm scenario in SimGrid and compare it with published figures", [](CLI::App& sub) {
      auto config = std::make_shared<sim::SimCommandConfig>();
      sub.add_option("scenario", config->scenario, "Scenario YAML file")->required();
      sub.add_option("--seed", config->seed, "Replace the scenario's seed");
      sub.add_option("--set", config->set, "Override a scenario key: key.path=value (repeatable)")
          ->allow_extra_args(false);
      sub.add_option("--out", config->out, "Write the results as JSON to this file");
      return [config] { return sim::run_sim_command(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

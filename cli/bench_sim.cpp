// `bouquet bench-sim [--scenario FILE] [--seed S] [--pairs N]`
#include "sim/bench_sim.h"
#include "cli/command.h"

#include <fmt/core.h>

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration bench_sim_command{
    "bench-sim", "Time the simulator on a scenario against a bare SimGrid ping-pong of as many messages",
    [](CLI::App& sub) {
      auto config = std::make_shared<sim::BenchSimConfig>();
      sub.add_option("--scenario", config->scenario, "Scenario YAML file")->capture_default_str();
      sub.add_option("--seed", config->seed, "Replace the scenario's seed");
      sub.add_option("--pairs", config->pairs, "Ping-pong host pairs")->capture_default_str();
      return [config] {
        fmt::print("{}", sim::format_bench_sim(*config, sim::bench_sim(*config)));
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli

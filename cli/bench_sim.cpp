// `bouquet bench-sim [--scenario FILE] [--seed S] [--pairs N] [--scale K] [--set key=value]...`
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
      sub.add_option("--scale", config->scale, "Multiply every server and client group's count by K")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{1}, int64_t{1000}));
      sub.add_option("--set", config->set, "Override a scenario key: key.path=value (repeatable), as `sim` does")
          ->allow_extra_args(false);
      return [config] {
        fmt::print("{}", sim::format_bench_sim(*config, sim::bench_sim(*config)));
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli

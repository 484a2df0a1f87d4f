// `bouquet sweep EXPERIMENT.yaml --out DIR [--jobs N] [--resume]`
#include "cli/command.h"
#include "sim/sweep/sweep_command.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration sweep_command{
    "sweep", "Run a grid of simulations with several seeds: CSVs, plots and a Markdown report",
    [](CLI::App& sub) {
      auto config = std::make_shared<sim::sweep::SweepCommandConfig>();
      sub.add_option("experiment", config->experiment, "Experiment YAML file")->required();
      sub.add_option("--out", config->out, "Directory for runs.csv, aggregate.csv, report.md and plots")
          ->required();
      sub.add_option("--jobs", config->jobs, "Simulations at once (default: one per processor)")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--resume", config->resume, "Continue the sweep in --out, keeping its recorded runs");
      sub.add_flag("--retry-failed", config->retry_failed, "With --resume: run the failed runs again");
      sub.add_flag("!--no-plots", config->plots, "Skip drawing the PNG plots");
      sub.add_option("--plot-script", config->plot_script, "Plotting script (default: experiments/plot_sweep.py)");
      sub.add_option("--binary", config->binary, "The bouquet executable each run uses (default: this one)");
      sub.add_option("--python", config->python, "Python with matplotlib for the plots");
      return [config] { return sim::sweep::run_sweep_command(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

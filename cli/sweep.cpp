// `bouquet sweep EXPERIMENT.yaml --out DIR [--jobs N] [--resume] [--executor local|slurm ...]`
#include "cli/command.h"
#include "sim/sweep/sweep_command.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration sweep_command{
    "sweep", "Run a grid of simulations with several seeds: CSVs, plots and a Markdown report", [](CLI::App& sub) {
      auto config = std::make_shared<sim::sweep::SweepCommandConfig>();
      sub.add_option("experiment", config->experiment, "Experiment YAML file")->required();
      sub.add_option("--out", config->out, "Directory for runs.csv, aggregate.csv, report.md and plots")->required();
      sub.add_option("--jobs", config->jobs, "Simulations at once (default: one per processor)")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--resume", config->resume, "Continue the sweep in --out, keeping its recorded runs");
      sub.add_flag("--retry-failed", config->retry_failed, "With --resume: run the failed runs again");
      sub.add_flag("!--no-plots", config->plots, "Skip drawing the PNG plots");
      sub.add_option("--plot-script", config->plot_script, "Plotting script (default: experiments/plot_sweep.py)");
      sub.add_option("--binary", config->binary, "The bouquet executable each run uses (default: this one)");
      sub.add_option("--python", config->python, "Python with matplotlib for the plots");
      sub.add_option("--executor", config->executor,
                     "Where the runs execute: local (a process pool here) or slurm (one Slurm job array; "
                     "--out and the binary must be on a filesystem the compute nodes share)")
          ->check(CLI::IsMember({"local", "slurm"}));
      sub.add_option("--slurm-partition", config->slurm.partition,
                     "Partition for the job array (default: the cluster's)");
      sub.add_option("--slurm-time", config->slurm.time,
                     "Time limit of each array task, in Slurm's format (e.g. 30:00)");
      sub.add_option("--slurm-array-max", config->slurm.array_max, "Array tasks running at once (0: no limit)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--slurm-poll", config->slurm.poll_s, "Seconds between looks at the queue")
          ->check(CLI::PositiveNumber);
      return [config] { return sim::sweep::run_sweep_command(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

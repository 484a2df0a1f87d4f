// `bouquet sweep EXPERIMENT.yaml --out DIR [--jobs N] [--resume]`: runs every point of an
// experiment (experiment.h) with every seed as its own `bouquet sim` process, `jobs` at a time,
// and writes into DIR:
//   runs.csv       one row per run, appended as each ends; rewritten in grid order once all ended
//   aggregate.csv  per point, mean and 95% interval over seeds (aggregate.h)
//   report.md      what a person reads (report.h), with the PNG plots experiments/plot_sweep.py draws
//   runs/<id>.log, runs/<id>.json, experiment.yaml, scenario.yaml (copies of what ran)
// The whole experiment is checked before the first run. A failed run (error exit, crash, time
// limit, unreadable results) is a row with its error and seed. --resume keeps the recorded runs
// (keyed by point and seed) and runs the rest; the finished directory is the same as an
// uninterrupted sweep's, wall times aside. SIGINT/SIGTERM stop the workers; what finished stays.
// With executor "slurm" the pending runs become one Slurm job array that the command follows
// until every run has a result; the rows are the same as the local executor's, wall times aside.
#pragma once

#include <cstdint>
#include <string>

#include "sim/sweep/slurm_executor.h"

namespace bouquet::sim::sweep {

struct SweepCommandConfig {
  std::string experiment;     // path of the experiment YAML
  std::string out;            // the directory to write
  int64_t jobs = 0;           // worker processes; 0: one per processor
  bool resume = false;        // continue the sweep already in `out`
  bool retry_failed = false;  // with resume: run the failed runs again
  bool plots = true;          // draw PNGs with the plotting script
  std::string binary;         // the bouquet binary the workers run; "" = this executable
  std::string plot_script;    // "" = experiments/plot_sweep.py found beside the experiment or binary
  std::string python = "/usr/bin/python3";
  std::string executor = "local";  // local: a process pool here; slurm: one job array (slurm_executor.h)
  SlurmOptions slurm;
};

// 0: every run is recorded (failed ones included); 130: interrupted. Bad experiments throw
// ScenarioError, unusable output directories std::runtime_error.
int run_sweep_command(const SweepCommandConfig& config);

}  // namespace bouquet::sim::sweep

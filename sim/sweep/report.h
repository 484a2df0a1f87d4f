// report.md: what a person reads instead of the CSVs. What was swept (scenario, overrides, axes,
// seeds, how to reproduce), per metric the findings (highest and lowest point with their 95%
// intervals, the mean at each value of each axis) and its plots, the aggregate as a table, and
// every failed run with its seed and error. plots.json tells experiments/plot_sweep.py what to
// draw from aggregate.csv.
#pragma once

#include "sim/sweep/aggregate.h"
#include "sim/sweep/experiment.h"
#include "sim/sweep/run_table.h"

#include <string>
#include <vector>

namespace bouquet::sim::sweep {

// "plot-<n>-<metric>.png", n counting from 1.
std::string plot_file_name(size_t index, const PlotConfig& plot);
// The plots of `experiment` as JSON for the plotting script.
std::string plot_spec_json(const Experiment& experiment);

struct ReportInput {
  const Experiment& experiment;
  const std::vector<Point>& points;
  const std::vector<PointSummary>& summaries;
  const std::vector<RunRow>& rows;  // every recorded run (for failures and wall times)
  std::string command;              // the sweep command that reproduces this directory
  std::vector<bool> plot_drawn;     // per experiment plot
  std::string plot_note;            // why plots are missing; "" when they were drawn
};

std::string render_report(const ReportInput& input);

// A figure for tables: three significant digits, thousands without decimals.
std::string short_number(double value);

}  // namespace bouquet::sim::sweep

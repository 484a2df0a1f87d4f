// aggregate.csv: per point of the grid, how many runs it had and failed, and per metric the mean
// over its seeds with a 95% Student t interval (stats.h) and the number of runs that gave a value.
#pragma once

#include "sim/sweep/experiment.h"
#include "sim/sweep/run_table.h"
#include "sim/sweep/stats.h"

#include <string>
#include <vector>

namespace bouquet::sim::sweep {

struct PointSummary {
  size_t point = 0;
  std::vector<std::string> labels;  // per axis
  size_t runs = 0;
  size_t failed = 0;
  std::vector<Summary> metrics;  // per experiment metric, over the runs that succeeded
};

// Rows are matched to points by run id; rows of other points are ignored.
std::vector<PointSummary> aggregate(const Experiment& experiment, const std::vector<Point>& points,
                                    const std::vector<RunRow>& rows);

// Each axis, runs, failed, then per metric: <m>_mean, <m>_ci95_low, <m>_ci95_high, <m>_n.
std::vector<std::string> aggregate_columns(const Experiment& experiment);
void write_aggregate_csv(const std::string& path, const Experiment& experiment,
                         const std::vector<PointSummary>& summaries);

}  // namespace bouquet::sim::sweep

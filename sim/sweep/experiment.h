// A batch experiment: one base scenario, a grid of overrides, seeds. The file's keys are the
// fields below. load_experiment_file() reads it strictly and then dry-runs the scenario loader on
// every value of every axis and on every point of the grid, so a sweep that starts is one whose
// every run loads; a problem is reported with the experiment file's line and key.
//
//   version: 1
//   name: churn
//   description: text
//   scenario: churn-base.yaml            # relative to the experiment file
//   seeds: [1, 2, 3]                     # or {count: 3, first: 1}
//   set: {duration_s: 600}               # overrides every point shares (--set paths)
//   grid:                                # the cartesian product; the first axis varies slowest
//     - name: lifetime_s                 # the column in the CSVs
//       key: servers.*.lifetime_s        # one --set path; values are its values ...
//       values: [60, 3600, .inf]
//     - name: balancing                  # ... or, without key, each value sets several paths
//       values:
//         - {label: "off", set: {policies.balancing: none}}
//         - {label: "on", set: {policies.balancing: rebalance, policies.balance_period_s: 30}}
//   metrics: [tokens_per_s, finished_share]   # see metrics.h; default: every metric there
//   timeout_s: 600                       # a run longer than this is killed and recorded failed
//   plots:                               # default: each metric over the first axis
//     - {metric: tokens_per_s, x: lifetime_s, series: balancing, log_x: true, title: text}
//
// Axes not named by a plot's x or series become its panels, one per combination of their values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bouquet::sim::sweep {

struct AxisValue {
  std::string label;             // as it appears in the CSVs, the report and the plots
  std::vector<std::string> set;  // "key.path=value" assignments, in order
};

struct Axis {
  std::string name;
  std::string key;  // "" when each value names its own assignments
  std::vector<AxisValue> values;
};

struct PlotConfig {
  std::string metric;
  std::string x;       // an axis name
  std::string series;  // an axis name, or "" for one line per panel
  bool log_x = false;
  bool log_y = false;
  std::string title;
};

struct Experiment {
  int64_t version = 1;
  std::string name;
  std::string description;
  std::string file;           // the experiment file as given
  std::string scenario;       // as written in the file (relative to it)
  std::string scenario_path;  // resolved: a path that opens from the working directory
  std::vector<uint64_t> seeds;
  std::vector<std::string> set;  // shared overrides
  std::vector<Axis> grid;
  std::vector<std::string> metrics;
  double timeout_s = 0;  // 0: no limit
  std::vector<PlotConfig> plots;
};

// One combination of axis values.
struct Point {
  std::vector<size_t> value_index;     // per axis
  std::vector<std::string> labels;     // per axis
  std::vector<std::string> overrides;  // the shared set, then each axis value's set
};

// One simulation: a point with a seed. Its id is a hash of the point's overrides and the seed,
// so a resumed sweep recognises the runs it already has even if the grid was reordered.
struct RunSpec {
  size_t point = 0;
  uint64_t seed = 0;
  std::string id;
};

// Parses and checks the experiment file, including a dry-run load of the scenario for every axis
// value and every point. Throws ScenarioError ("file:line:column: key: problem").
Experiment load_experiment_file(const std::string& path);
// The same from text; `name` stands for the file in messages and `directory` is where relative
// scenario paths start from.
Experiment load_experiment_text(const std::string& text, const std::string& name, const std::string& directory);

// Every point, first axis slowest; with no axes, one point.
std::vector<Point> expand_points(const Experiment& experiment);
// Every run: points in order, each with every seed.
std::vector<RunSpec> expand_runs(const Experiment& experiment, const std::vector<Point>& points);
std::string run_id(const Point& point, uint64_t seed);

}  // namespace bouquet::sim::sweep

#include "sim/sweep/report.h"

#include "sim/sweep/metrics.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

namespace bouquet::sim::sweep {
namespace {

std::string point_name(const Experiment& e, const std::vector<std::string>& labels) {
  if (labels.empty()) return "the only point";
  std::vector<std::string> parts;
  for (size_t a = 0; a < labels.size(); ++a) parts.push_back(fmt::format("{}={}", e.grid[a].name, labels[a]));
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string with_interval(const Summary& s) {
  if (s.n == 0) return "no value";
  if (!s.ci95_low) return fmt::format("{} (n={})", short_number(s.mean), s.n);
  return fmt::format("{} [{}, {}]", short_number(s.mean), short_number(*s.ci95_low), short_number(*s.ci95_high));
}

std::string cell(const Summary& s) {
  if (s.n == 0) return "—";
  if (!s.ci95_low) return short_number(s.mean);
  return fmt::format("{} ± {}", short_number(s.mean), short_number(*s.ci95_high - s.mean));
}

void describe_setup(const ReportInput& in, std::string& out) {
  const Experiment& e = in.experiment;
  size_t failed = 0;
  double wall_sum_s = 0;
  for (const auto& row : in.rows) {
    failed += row.ok() ? 0 : 1;
    wall_sum_s += row.wall_s;
  }
  out += fmt::format("# {}\n\n", e.name);
  if (!e.description.empty()) out += e.description + "\n\n";
  out += "## What was swept\n\n";
  out += fmt::format("- Base scenario: `{}`", e.scenario);
  if (!e.set.empty()) out += fmt::format(", with `{}` at every point", fmt::join(e.set, "`, `"));
  out += ".\n";
  out +=
      fmt::format("- {} points x {} seeds ({}) = {} runs; {} recorded, {} of them failed.\n", in.points.size(),
                  e.seeds.size(), fmt::join(e.seeds, ", "), in.points.size() * e.seeds.size(), in.rows.size(), failed);
  out += fmt::format("- Simulation wall time: {:.1f} s in all, {:.1f} s per run on average.\n", wall_sum_s,
                     in.rows.empty() ? 0.0 : wall_sum_s / static_cast<double>(in.rows.size()));
  out += fmt::format(
      "- Reproduce: `{}`; one run: `bouquet sim {} --seed S --set key=value ...` "
      "(runs/<run_id>.log holds each run's own output and command).\n",
      in.command, e.scenario_path);
  out +=
      "- Intervals are 95% Student t intervals of the mean over seeds; a run that failed or did not "
      "produce a metric is left out of that metric (its n says how many remained).\n\n";
  if (e.grid.empty()) return;
  out += "| axis | scenario key | values |\n|---|---|---|\n";
  for (const Axis& axis : e.grid) {
    std::vector<std::string> labels;
    for (const auto& v : axis.values) labels.push_back(v.label);
    std::string key = axis.key;
    if (key.empty()) {
      std::vector<std::string> sets;
      for (const auto& v : axis.values) {
        sets.push_back(v.set.empty() ? fmt::format("{}: the base scenario", v.label)
                                     : fmt::format("{}: `{}`", v.label, fmt::join(v.set, "`, `")));
      }
      key = fmt::format("{}", fmt::join(sets, "; "));
    } else {
      key = "`" + key + "`";
    }
    out += fmt::format("| {} | {} | {} |\n", axis.name, key, fmt::join(labels, ", "));
  }
  out += "\n";
}

// The mean at each value of `axis`, over the points holding that value (other axes averaged).
std::string axis_effect(const ReportInput& in, size_t axis, size_t metric) {
  const Axis& a = in.experiment.grid[axis];
  std::vector<std::string> parts;
  for (size_t v = 0; v < a.values.size(); ++v) {
    double sum = 0;
    size_t n = 0;
    for (const auto& s : in.summaries) {
      if (in.points[s.point].value_index[axis] != v || s.metrics[metric].n == 0) continue;
      sum += s.metrics[metric].mean;
      ++n;
    }
    parts.push_back(fmt::format("{} → {}", a.values[v].label, n ? short_number(sum / static_cast<double>(n)) : "—"));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

// " (as are N other points)" when other points share the mean `value` exactly.
std::string ties(const ReportInput& in, size_t m, double value) {
  size_t same = 0;
  for (const auto& s : in.summaries) same += s.metrics[m].n > 0 && s.metrics[m].mean == value ? 1 : 0;
  if (same == 2) return " (as is 1 other point)";
  return same > 2 ? fmt::format(" (as are {} other points)", same - 1) : "";
}

void describe_metric(const ReportInput& in, size_t m, std::string& out) {
  const Experiment& e = in.experiment;
  bool known = false;
  const MetricInfo info = find_metric(e.metrics[m], &known);
  out += fmt::format("### {}{}\n\n{}{}.\n\n", info.name, info.unit.empty() ? "" : " (" + info.unit + ")", info.what,
                     info.higher_is_better ? "; higher is better" : "; lower is better");
  const PointSummary* high = nullptr;
  const PointSummary* low = nullptr;
  size_t missing = 0;
  for (const auto& s : in.summaries) {
    const Summary& v = s.metrics[m];
    if (v.n == 0) {
      ++missing;
      continue;
    }
    if (!high || v.mean > high->metrics[m].mean) high = &s;
    if (!low || v.mean < low->metrics[m].mean) low = &s;
  }
  if (!high) {
    out += "No run produced this metric.\n\n";
    return;
  }
  if (in.summaries.size() > 1 && high->metrics[m].mean == low->metrics[m].mean) {
    out += fmt::format("- The same at every point that has a value: {}.\n", short_number(high->metrics[m].mean));
  } else if (in.summaries.size() > 1) {
    out += fmt::format("- Highest: {} at {}{}.\n", with_interval(high->metrics[m]), point_name(e, high->labels),
                       ties(in, m, high->metrics[m].mean));
    out += fmt::format("- Lowest: {} at {}{}.\n", with_interval(low->metrics[m]), point_name(e, low->labels),
                       ties(in, m, low->metrics[m].mean));
    if (high->metrics[m].ci95_low && low->metrics[m].ci95_high &&
        *low->metrics[m].ci95_high >= *high->metrics[m].ci95_low) {
      out +=
          "- The highest and lowest points' intervals overlap: with these seeds their difference is not "
          "significant at 95%.\n";
    }
  } else {
    out += fmt::format("- {}.\n", with_interval(high->metrics[m]));
  }
  for (size_t a = 0; a < e.grid.size(); ++a) {
    if (e.grid[a].values.size() < 2) continue;
    out += fmt::format("- By {} (mean over the other axes): {}.\n", e.grid[a].name, axis_effect(in, a, m));
  }
  if (missing)
    out += fmt::format("- {} of {} points have no value: none of their runs produced one.\n", missing,
                       in.summaries.size());
  out += "\n";
  for (size_t p = 0; p < e.plots.size(); ++p) {
    if (e.plots[p].metric != e.metrics[m] || p >= in.plot_drawn.size() || !in.plot_drawn[p]) continue;
    const std::string title = e.plots[p].title.empty() ? e.metrics[m] : e.plots[p].title;
    out += fmt::format("![{}]({})\n\n", title, plot_file_name(p, e.plots[p]));
  }
}

void aggregate_table(const ReportInput& in, std::string& out) {
  const Experiment& e = in.experiment;
  out += "## Aggregate (mean ± half-width of the 95% interval)\n\n|";
  for (const auto& axis : e.grid) out += fmt::format(" {} |", axis.name);
  out += " runs | failed |";
  for (const auto& m : e.metrics) out += fmt::format(" {} |", m);
  out += "\n|";
  for (size_t i = 0; i < e.grid.size() + 2 + e.metrics.size(); ++i) out += "---|";
  out += "\n";
  for (const auto& s : in.summaries) {
    out += "|";
    for (const auto& label : s.labels) out += fmt::format(" {} |", label);
    out += fmt::format(" {} | {} |", s.runs, s.failed);
    for (const auto& v : s.metrics) out += fmt::format(" {} |", cell(v));
    out += "\n";
  }
  out += "\n";
}

void failures(const ReportInput& in, std::string& out) {
  std::vector<const RunRow*> failed;
  for (const auto& row : in.rows) {
    if (!row.ok()) failed.push_back(&row);
  }
  if (failed.empty()) return;
  out += fmt::format("## Failed runs ({})\n\n| run_id | point | seed | error |\n|---|---|---|---|\n", failed.size());
  for (const RunRow* row : failed) {
    std::string error = row->error;
    std::replace(error.begin(), error.end(), '|', '/');
    out +=
        fmt::format("| {} | {} | {} | {} |\n", row->run_id, point_name(in.experiment, row->labels), row->seed, error);
  }
  out += "\n";
}

// One line on failures, grouped by their error, so a reader sees at once whether runs were lost.
void failure_summary(const ReportInput& in, std::string& out) {
  std::map<std::string, size_t> by_error;
  size_t failed = 0;
  for (const auto& row : in.rows) {
    if (row.ok()) continue;
    ++failed;
    ++by_error[row.error.substr(0, std::min<size_t>(row.error.size(), 100))];
  }
  if (failed == 0) return;
  std::vector<std::pair<size_t, std::string>> groups;
  for (const auto& [error, count] : by_error) groups.emplace_back(count, error);
  std::sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> parts;
  for (size_t i = 0; i < groups.size() && i < 3; ++i)
    parts.push_back(fmt::format("{} x \"{}\"", groups[i].first, groups[i].second));
  if (groups.size() > 3) parts.push_back(fmt::format("{} other errors", groups.size() - 3));
  out += fmt::format("**{} of {} runs failed** and count in no metric: {} (every one is listed under Failed runs).\n\n",
                     failed, in.rows.size(), fmt::join(parts, "; "));
}

}  // namespace

std::string short_number(double value) {
  if (std::isnan(value)) return "—";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  const double magnitude = std::abs(value);
  if (magnitude >= 1e6) return fmt::format("{:.3g}", value);
  if (magnitude >= 100) return fmt::format("{:.0f}", value);
  if (magnitude >= 10) return fmt::format("{:.1f}", value);
  if (magnitude >= 1) return fmt::format("{:.2f}", value);
  return fmt::format("{:.3g}", value);
}

std::string plot_file_name(size_t index, const PlotConfig& plot) {
  return fmt::format("plot-{}-{}.png", index + 1, plot.metric);
}

std::string plot_spec_json(const Experiment& e) {
  nlohmann::json spec = {{"experiment", e.name}, {"aggregate", "aggregate.csv"}};
  nlohmann::json axes = nlohmann::json::array();
  for (const auto& axis : e.grid) {
    nlohmann::json labels = nlohmann::json::array();
    for (const auto& v : axis.values) labels.push_back(v.label);
    axes.push_back({{"name", axis.name}, {"labels", labels}});
  }
  spec["axes"] = axes;
  nlohmann::json plots = nlohmann::json::array();
  for (size_t i = 0; i < e.plots.size(); ++i) {
    const PlotConfig& p = e.plots[i];
    bool known = false;
    const MetricInfo info = find_metric(p.metric, &known);
    plots.push_back({{"file", plot_file_name(i, p)},
                     {"metric", p.metric},
                     {"unit", info.unit},
                     {"x", p.x},
                     {"series", p.series},
                     {"log_x", p.log_x},
                     {"log_y", p.log_y},
                     {"title", p.title.empty() ? p.metric : p.title}});
  }
  spec["plots"] = plots;
  return spec.dump(2) + "\n";
}

std::string render_report(const ReportInput& in) {
  std::string out;
  describe_setup(in, out);
  out += "## Findings\n\n";
  failure_summary(in, out);
  if (!in.plot_note.empty()) out += fmt::format("(Plots were not drawn: {}.)\n\n", in.plot_note);
  for (size_t m = 0; m < in.experiment.metrics.size(); ++m) describe_metric(in, m, out);
  aggregate_table(in, out);
  failures(in, out);
  out +=
      "## Files\n\n`runs.csv` (one row per run: parameters, seed, status, error, metrics, wall time), "
      "`aggregate.csv` (per point: runs, failures, and per metric mean, 95% interval, n), the plots, "
      "`plots.json` (what experiments/plot_sweep.py draws), `runs/<run_id>.log` and `.json` (each run's "
      "own output), copies of the experiment and its base scenario.\n";
  return out;
}

}  // namespace bouquet::sim::sweep

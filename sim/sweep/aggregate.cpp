#include "sim/sweep/aggregate.h"

#include <fmt/core.h>

#include <fstream>
#include <map>
#include <stdexcept>

namespace bouquet::sim::sweep {

std::vector<PointSummary> aggregate(const Experiment& e, const std::vector<Point>& points,
                                    const std::vector<RunRow>& rows) {
  std::map<std::string, size_t> point_of_run;
  for (const RunSpec& run : expand_runs(e, points)) point_of_run[run.id] = run.point;
  std::vector<std::vector<const RunRow*>> by_point(points.size());
  for (const RunRow& row : rows) {
    auto it = point_of_run.find(row.run_id);
    if (it != point_of_run.end()) by_point[it->second].push_back(&row);
  }
  std::vector<PointSummary> out;
  for (size_t p = 0; p < points.size(); ++p) {
    PointSummary s;
    s.point = p;
    s.labels = points[p].labels;
    s.runs = by_point[p].size();
    for (const RunRow* row : by_point[p]) s.failed += row->ok() ? 0 : 1;
    for (size_t m = 0; m < e.metrics.size(); ++m) {
      std::vector<double> values;
      for (const RunRow* row : by_point[p]) {
        if (row->ok()) values.push_back(row->metrics[m]);
      }
      s.metrics.push_back(summarize(values));
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> aggregate_columns(const Experiment& e) {
  std::vector<std::string> columns;
  for (const auto& axis : e.grid) columns.push_back(axis.name);
  columns.emplace_back("runs");
  columns.emplace_back("failed");
  for (const auto& m : e.metrics) {
    for (const char* suffix : {"_mean", "_ci95_low", "_ci95_high", "_n"}) columns.push_back(m + suffix);
  }
  return columns;
}

void write_aggregate_csv(const std::string& path, const Experiment& e, const std::vector<PointSummary>& summaries) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("{}: cannot write", path));
  out << csv_line(aggregate_columns(e)) << "\n";
  for (const auto& s : summaries) {
    std::vector<std::string> cells = s.labels;
    cells.push_back(std::to_string(s.runs));
    cells.push_back(std::to_string(s.failed));
    for (const auto& m : s.metrics) {
      cells.push_back(format_number(m.mean));
      cells.push_back(m.ci95_low ? format_number(*m.ci95_low) : "");
      cells.push_back(m.ci95_high ? format_number(*m.ci95_high) : "");
      cells.push_back(std::to_string(m.n));
    }
    out << csv_line(cells) << "\n";
  }
  if (!out.flush()) throw std::runtime_error(fmt::format("{}: cannot write", path));
}

}  // namespace bouquet::sim::sweep

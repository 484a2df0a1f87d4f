// The summary over every scenario (`bouquet sim --summary scenarios/`): one line per row with a
// published figure or a role worth showing, then the figures the targets are judged on, over
// prediction rows whose published figure is primary or secondary: how many, median and largest
// |error|, the share within +-15%, and how many "did not finish" figures the simulation matches.
// Calibration rows are shown but never counted; recalled figures are shown but never counted.
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace bouquet::sim {

struct SummaryRow {
  std::string name;  // SCENARIO/ROW
  std::string metric;
  double simulated = std::numeric_limits<double>::quiet_NaN();  // NaN: did not finish
  std::optional<double> published;
  bool published_did_not_finish = false;
  std::string role = "prediction";   // prediction | calibration
  std::string quality = "recalled";  // primary | secondary | recalled

  bool counted() const { return role == "prediction" && (quality == "primary" || quality == "secondary"); }
  // (simulated - published) / published; NaN without both figures.
  double error() const {
    if (!published || std::isnan(simulated)) return std::numeric_limits<double>::quiet_NaN();
    return (simulated - *published) / *published;
  }
};

struct SummaryStats {
  int count = 0;       // counted rows with a published number (and a simulated one: see unfinished)
  int unfinished = 0;  // counted rows with a published number the simulation did not finish
  double median_abs_error = std::numeric_limits<double>::quiet_NaN();
  double max_abs_error = std::numeric_limits<double>::quiet_NaN();
  double share_within_15 = std::numeric_limits<double>::quiet_NaN();
  int did_not_finish_rows = 0;     // counted rows published as "did not finish"
  int did_not_finish_matched = 0;  // ... that the simulation did not finish either
};

SummaryStats summarize(const std::vector<SummaryRow>& rows);
// The table and the statistics, as `--summary` prints them.
std::string format_summary(const std::vector<SummaryRow>& rows, const SummaryStats& stats);

}  // namespace bouquet::sim

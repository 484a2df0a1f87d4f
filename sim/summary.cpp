#include "sim/summary.h"

#include <fmt/core.h>

#include <algorithm>

namespace bouquet::sim {
namespace {

std::string figure(double value) {
  if (std::isnan(value)) return "did not finish";
  if (std::abs(value) < 10) return fmt::format("{:.3f}", value);
  if (std::abs(value) < 1000) return fmt::format("{:.1f}", value);
  return fmt::format("{:.0f}", value);
}

}  // namespace

SummaryStats summarize(const std::vector<SummaryRow>& rows) {
  SummaryStats stats;
  std::vector<double> errors;
  for (const auto& row : rows) {
    if (!row.counted()) continue;
    if (row.published_did_not_finish) {
      ++stats.did_not_finish_rows;
      if (std::isnan(row.simulated)) ++stats.did_not_finish_matched;
      continue;
    }
    if (!row.published) continue;
    if (std::isnan(row.simulated)) {
      ++stats.unfinished;
      continue;
    }
    errors.push_back(std::abs(row.error()));
  }
  stats.count = static_cast<int>(errors.size());
  if (errors.empty()) return stats;
  std::sort(errors.begin(), errors.end());
  const size_t n = errors.size();
  stats.median_abs_error = n % 2 == 1 ? errors[n / 2] : (errors[n / 2 - 1] + errors[n / 2]) / 2;
  stats.max_abs_error = errors.back();
  const auto within = std::count_if(errors.begin(), errors.end(), [](double e) { return e <= 0.15; });
  stats.share_within_15 = static_cast<double>(within) / static_cast<double>(n);
  return stats;
}

std::string format_summary(const std::vector<SummaryRow>& rows, const SummaryStats& stats) {
  std::string out = fmt::format("{:<48} {:>14} {:>14} {:>8}  {:<11} {}\n", "row", "simulated", "published", "error",
                                "role", "source");
  for (const auto& row : rows) {
    const std::string published =
        row.published_did_not_finish ? "did not finish" : (row.published ? figure(*row.published) : "-");
    const double error = row.error();
    out += fmt::format("{:<48} {:>14} {:>14} {:>8}  {:<11} {}\n", row.name, figure(row.simulated), published,
                       std::isnan(error) ? "-" : fmt::format("{:+.1f}%", 100 * error), row.role, row.quality);
  }
  out += fmt::format("predictions with primary or secondary sources: {}", stats.count);
  if (stats.count > 0) {
    out += fmt::format(", median |error| {:.1f}%, max |error| {:.1f}%, within +-15%: {:.0f}%",
                       100 * stats.median_abs_error, 100 * stats.max_abs_error, 100 * stats.share_within_15);
  }
  if (stats.unfinished > 0) out += fmt::format(", {} did not finish", stats.unfinished);
  out += "\n";
  if (stats.did_not_finish_rows > 0) {
    out += fmt::format("published \"did not finish\" (primary or secondary): {} of {} do not finish here either\n",
                       stats.did_not_finish_matched, stats.did_not_finish_rows);
  }
  return out;
}

}  // namespace bouquet::sim

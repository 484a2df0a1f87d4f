#include "sim/calibration.h"

#include "sim/isolated_run.h"
#include "sim/simulation.h"

#include <fmt/core.h>

#include <cmath>

namespace bouquet::sim {
namespace {

constexpr int kMaxSimulations = 30;
constexpr double kTolerance = 1e-10;  // relative, on the row's figure

}  // namespace

std::vector<Calibrated> calibrate(ScenarioFile& file) {
  std::vector<Calibrated> solved;
  for (const auto& entry : file.calibration) {
    size_t r = 0;
    while (file.rows[r].name != entry.row) ++r;  // the loader checked that the row exists
    const RowConfig& row = file.rows[r];
    const WeightFormat format = *parse_weight_format(entry.format);
    const double published = *row.published;  // the loader checked it is there
    Calibrated out{entry.format, row.name, row.metric, published, 0, 0};

    // Seconds per unit of the row's figure, as a function of x = 1 / efficiency.
    auto seconds_per_unit = [&](double x) {
      Scenario scenario = file.row_scenarios[r];
      scenario.cost.of(format).compute_eff = scenario.cost.of(format).memory_eff = 1.0 / x;
      ++out.simulations;
      const double value = simulate_isolated(scenario).metric(row.metric);
      if (!(value > 0)) {
        throw SimulationError(
            fmt::format("calibrating {} on row {}: the row did not finish at "
                        "efficiency {:.4f}",
                        entry.format, row.name, 1.0 / x));
      }
      return 1.0 / value;
    };
    const double target = 1.0 / published;
    double x0 = 1.0, g0 = seconds_per_unit(x0);
    if (g0 > target * (1 + kTolerance)) {
      throw SimulationError(
          fmt::format("calibrating {} on row {}: even at efficiency 1 the row gives {:.4g}, short of the "
                      "published {:.4g}; the rest of the model is too slow for it",
                      entry.format, row.name, 1.0 / g0, published));
    }
    double x1 = 2.0, g1 = seconds_per_unit(x1);
    while (std::abs(g1 / target - 1) > kTolerance) {
      if (out.simulations >= kMaxSimulations || g1 == g0) {
        throw SimulationError(fmt::format("calibrating {} on row {}: no convergence after {} runs", entry.format,
                                          row.name, out.simulations));
      }
      const double x2 = std::max(1.0, x1 + (target - g1) * (x1 - x0) / (g1 - g0));
      x0 = x1;
      g0 = g1;
      x1 = x2;
      g1 = seconds_per_unit(x1);
    }
    out.efficiency = 1.0 / x1;
    file.base.cost.of(format).compute_eff = file.base.cost.of(format).memory_eff = out.efficiency;
    for (auto& scenario : file.row_scenarios) {
      scenario.cost.of(format).compute_eff = scenario.cost.of(format).memory_eff = out.efficiency;
    }
    solved.push_back(out);
  }
  return solved;
}

}  // namespace bouquet::sim

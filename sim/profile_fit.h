// Calibration of an implementation profile (`bouquet sim --calibrate PROFILE.yaml`): its fitted
// parameters are fitted together on the calibration rows the profile names, by least squares on
// the log error, sum over rows of ln(simulated / published)^2, over the logarithms of the
// parameters (each kept in its range): Levenberg-Marquardt with forward differences, each
// residual one simulation of its row. Every other row of every scenario stays a prediction.
#pragma once

#include "sim/profile.h"
#include "sim/scenario.h"

#include <map>
#include <string>
#include <vector>

namespace bouquet::sim {

struct FitRow {
  std::string name;  // SCENARIO/ROW
  double published = 0;
  double simulated = 0;  // at the fitted values
};

struct ProfileFit {
  std::map<std::string, double> before, after;  // fitted parameters' values
  std::vector<FitRow> rows;
  int simulations = 0;
  int iterations = 0;
  double sum_squared_log_error = 0;
};

// The calibration rows of `profile` loaded from the scenario files beside its folder (rows are
// SCENARIO/ROW). A row that does not exist, has no published figure or belongs to a scenario of
// another profile is refused at the line of the parameter naming it (ScenarioError).
struct CalibrationRow {
  std::string name;
  Scenario scenario;
  std::string metric;
  double published = 0;
};
std::vector<CalibrationRow> calibration_rows(const Profile& profile);

// Fits; throws SimulationError when a row does not finish or the fit does not converge, and
// ScenarioError (at the parameter's line) when a parameter moves none of its rows.
ProfileFit fit_profile(const Profile& profile, int max_iterations = 40);

}  // namespace bouquet::sim

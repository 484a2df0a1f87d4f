#include "sim/profile_fit.h"

#include "sim/isolated_run.h"
#include "sim/simulation.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>

#include <cstdio>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

namespace bouquet::sim {
namespace {

constexpr double kStep = 1e-3;   // forward difference on ln(parameter)
constexpr double kFloor = 1e-7;  // ln of a parameter whose range starts at 0

[[noreturn]] void fail_at(const Profile& profile, const ProfileParameter& p, const std::string& problem) {
  throw ScenarioError(fmt::format("{}:{}: {}: {}", profile.path, p.line, p.key, problem));
}

// Solves a x = b (n small) by Gaussian elimination with partial pivoting; false when singular.
bool solve(std::vector<std::vector<double>> a, std::vector<double> b, std::vector<double>& x) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < n; ++r) {
      if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
    }
    if (std::abs(a[pivot][c]) < 1e-300) return false;
    std::swap(a[c], a[pivot]);
    std::swap(b[c], b[pivot]);
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  x.assign(n, 0);
  for (size_t i = n; i-- > 0;) {
    double sum = b[i];
    for (size_t k = i + 1; k < n; ++k) sum -= a[i][k] * x[k];
    x[i] = sum / a[i][i];
  }
  return true;
}

}  // namespace

std::vector<CalibrationRow> calibration_rows(const Profile& profile) {
  const std::filesystem::path folder = std::filesystem::path(profile.path).parent_path().parent_path();
  std::vector<CalibrationRow> out;
  for (const auto& name : profile.calibration_rows()) {
    const ProfileParameter* naming = nullptr;
    for (const auto& p : profile.parameters) {
      if (!naming && std::find(p.rows.begin(), p.rows.end(), name) != p.rows.end()) naming = &p;
    }
    const std::string stem = name.substr(0, name.find('/'));
    const std::string row_name = name.substr(name.find('/') + 1);
    const std::string path = (folder / (stem + ".yaml")).string();
    if (!std::filesystem::exists(path)) {
      fail_at(profile, *naming, fmt::format("calibration row '{}' does not exist: no scenario {}", name, path));
    }
    ScenarioFile file = load_scenario_file(path, {});
    size_t i = 0;
    while (i < file.rows.size() && file.rows[i].name != row_name) ++i;
    if (i == file.rows.size()) {
      fail_at(profile, *naming,
              fmt::format("calibration row '{}' does not exist: {} has no row '{}'", name, path, row_name));
    }
    const RowConfig& row = file.rows[i];
    if (!row.published) {
      fail_at(profile, *naming, fmt::format("calibration row '{}' has no published figure to fit", name));
    }
    if (file.row_scenarios[i].profile != profile.name) {
      fail_at(profile, *naming,
              fmt::format("calibration row '{}' runs profile '{}', not '{}'", name, file.row_scenarios[i].profile,
                          profile.name));
    }
    out.push_back({name, file.row_scenarios[i], row.metric, *row.published});
  }
  return out;
}

ProfileFit fit_profile(const Profile& profile, int max_iterations) {
  std::vector<const ProfileParameter*> fitted;
  for (const auto& p : profile.parameters) {
    if (p.fitted()) fitted.push_back(&p);
  }
  std::vector<CalibrationRow> rows = calibration_rows(profile);
  ProfileFit fit;
  const size_t n = fitted.size();
  const size_t m = rows.size();
  if (n == 0) return fit;

  std::vector<double> lo(n), hi(n), x(n);
  for (size_t j = 0; j < n; ++j) {
    lo[j] = std::log(std::max(fitted[j]->lo, kFloor));
    hi[j] = std::log(fitted[j]->hi);
    x[j] = std::clamp(std::log(std::max(fitted[j]->value, kFloor)), lo[j], hi[j]);
    fit.before[fitted[j]->key] = fitted[j]->value;
  }
  // ln(simulated / published) of every row at parameters exp(x).
  auto residuals = [&](const std::vector<double>& at, std::vector<double>* simulated) {
    std::vector<double> r(m);
    for (size_t i = 0; i < m; ++i) {
      Scenario scenario = rows[i].scenario;
      for (size_t j = 0; j < n; ++j) {
        apply_profile_value(scenario, fitted[j]->key, std::exp(at[j]));
        for (const auto& alias : fitted[j]->aliases) apply_profile_value(scenario, alias, std::exp(at[j]));
      }
      ++fit.simulations;
      const double value = simulate_isolated(scenario).metric(rows[i].metric);
      if (!(value > 0)) {
        std::string where;
        for (size_t j = 0; j < n; ++j) where += fmt::format(" {}={:.4g}", fitted[j]->key, std::exp(at[j]));
        throw SimulationError(
            fmt::format("{}: calibration row {} did not finish at{}", profile.path, rows[i].name, where));
      }
      r[i] = std::log(value / rows[i].published);
      if (simulated) (*simulated)[i] = value;
    }
    return r;
  };
  auto squared = [](const std::vector<double>& r) {
    double sum = 0;
    for (double v : r) sum += v * v;
    return sum;
  };

  std::vector<double> r = residuals(x, nullptr);
  double cost = squared(r);
  double lambda = 1e-2;
  bool converged = false;
  for (int iteration = 0; iteration < max_iterations && !converged; ++iteration) {
    fit.iterations = iteration + 1;
    std::string at;
    for (size_t j = 0; j < n; ++j) at += fmt::format(" {}={:.4g}", fitted[j]->key, std::exp(x[j]));
    fmt::print(stderr, "calibrate: iteration {}: sum of squared log errors {:.6g} at{}\n", fit.iterations, cost, at);
    // Jacobian by forward differences (backward at an upper bound).
    std::vector<std::vector<double>> jac(m, std::vector<double>(n));
    for (size_t j = 0; j < n; ++j) {
      std::vector<double> moved = x;
      const double h = x[j] + kStep > hi[j] ? -kStep : kStep;
      moved[j] += h;
      const std::vector<double> rj = residuals(moved, nullptr);
      bool moves = false;
      for (size_t i = 0; i < m; ++i) {
        jac[i][j] = (rj[i] - r[i]) / h;
        moves |= jac[i][j] != 0;
      }
      if (!moves) {
        fail_at(profile, *fitted[j],
                "moves none of the calibration rows: it cannot be fitted on them (name a row it affects)");
      }
    }
    std::vector<std::vector<double>> jtj(n, std::vector<double>(n, 0));
    std::vector<double> jtr(n, 0);
    for (size_t i = 0; i < m; ++i) {
      for (size_t a = 0; a < n; ++a) {
        jtr[a] += jac[i][a] * r[i];
        for (size_t b = 0; b < n; ++b) jtj[a][b] += jac[i][a] * jac[i][b];
      }
    }
    // Damped steps until one lowers the cost (or the damping says the minimum is here).
    for (int tries = 0; tries < 12; ++tries) {
      std::vector<std::vector<double>> a = jtj;
      std::vector<double> b(n), dx;
      for (size_t k = 0; k < n; ++k) {
        a[k][k] += lambda * std::max(jtj[k][k], 1e-12);
        b[k] = -jtr[k];
      }
      if (!solve(a, b, dx)) {
        lambda *= 10;
        continue;
      }
      // A parameter at a bound that the step pushes further out stays there: solve for the rest.
      bool frozen = false;
      for (size_t k = 0; k < n; ++k) {
        const bool pushed_out = (x[k] <= lo[k] && dx[k] < 0) || (x[k] >= hi[k] && dx[k] > 0);
        if (!pushed_out) continue;
        for (size_t c = 0; c < n; ++c) a[k][c] = a[c][k] = 0;
        a[k][k] = 1;
        b[k] = 0;
        frozen = true;
      }
      if (frozen && !solve(a, b, dx)) {
        lambda *= 10;
        continue;
      }
      std::vector<double> next(n);
      double largest = 0;
      for (size_t k = 0; k < n; ++k) {
        next[k] = std::clamp(x[k] + dx[k], lo[k], hi[k]);
        largest = std::max(largest, std::abs(next[k] - x[k]));
      }
      if (largest < 1e-6) {
        converged = true;
        break;
      }
      // A trial step so far off that a row does not finish is simply a worse step.
      std::vector<double> rn;
      try {
        rn = residuals(next, nullptr);
      } catch (const SimulationError&) {
        lambda *= 4;
        continue;
      }
      const double next_cost = squared(rn);
      if (next_cost < cost) {
        converged = cost - next_cost < 1e-7 * std::max(cost, 1e-12) || next_cost < 1e-14;
        x = next;
        r = rn;
        cost = next_cost;
        lambda = std::max(lambda / 3, 1e-9);
        break;
      }
      lambda *= 4;
      if (tries == 11) converged = true;  // no step lowers the cost: a minimum within the damping's reach
    }
  }
  if (!converged) {
    const auto line = profile.lines.find("procedure");
    throw ScenarioError(fmt::format(
        "{}:{}: procedure: the fit did not converge after {} iterations ({} simulations); "
        "the sum of squared log errors is still {:.4g}",
        profile.path, line == profile.lines.end() ? 1 : line->second, fit.iterations, fit.simulations, cost));
  }
  std::vector<double> simulated(m);
  r = residuals(x, &simulated);
  fit.sum_squared_log_error = squared(r);
  for (size_t j = 0; j < n; ++j) fit.after[fitted[j]->key] = std::exp(x[j]);
  for (size_t i = 0; i < m; ++i) fit.rows.push_back({rows[i].name, rows[i].published, simulated[i]});
  return fit;
}

}  // namespace bouquet::sim

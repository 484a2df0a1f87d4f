#include "sim/sim_command.h"

#include "sim/calibration.h"
#include "sim/isolated_run.h"
#include "sim/profile_fit.h"
#include "sim/scenario.h"
#include "sim/simulation.h"
#include "sim/summary.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

namespace bouquet::sim {
namespace {

std::string number(double value) {
  if (std::isnan(value)) return "did not finish";
  if (std::abs(value) < 10) return fmt::format("{:.3f}", value);
  if (std::abs(value) < 1000) return fmt::format("{:.1f}", value);
  return fmt::format("{:.0f}", value);
}

std::string unit(const std::string& metric) { return std::string(metric_unit(metric)); }

std::string reproduce_command(const SimCommandConfig& config, uint64_t seed) {
  std::string command = fmt::format("bouquet sim {} --seed {}", config.scenario, seed);
  for (const auto& assignment : config.set) command += fmt::format(" --set {}", assignment);
  return command;
}

double wall_s(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

void print_header(const ScenarioFile& file, const SimCommandConfig& config) {
  const Scenario& s = file.base;
  fmt::print("scenario {}: {}\n", s.name, s.description);
  fmt::print("model {} with {} weights, {} activations, wire compression {}\n", s.model.name, s.model.weights,
             s.model.activations, s.model.wire_compression);
  fmt::print("network model {} (cross-traffic {}, TCP window {:.0f} B): {}\n", s.network.model,
             s.network.crosstraffic ? "on" : "off", s.network.tcp_window_bytes, s.network.why);
  fmt::print("seed {}; reproduce with: {}\n", s.seed, reproduce_command(config, s.seed));
}

// " (N recoveries replaying M positions)" over all clients, or nothing when there were none.
std::string recoveries(const RunResult& result) {
  int64_t count = 0, positions = 0;
  for (const auto& c : result.clients) {
    count += c.recoveries;
    positions += c.positions_replayed;
  }
  if (count == 0) return "";
  return fmt::format(" ({} recoveries replaying {} positions)", count, positions);
}

void print_clients(const RunResult& result) {
  for (const auto& c : result.clients) {
    std::string recoveries;
    if (c.recoveries > 0) {
      recoveries = fmt::format(", {} recoveries replaying {} positions", c.recoveries, c.positions_replayed);
    }
    fmt::print("  [t={:.3f}s] {} {}: {} steps, {} tokens in {:.3f} s: {} steps/s, {} tokens/s{}{}\n", c.ended_s, c.name,
               c.kind, c.steps, c.tokens, c.measured_s, number(c.steps_per_s()), number(c.tokens_per_s()), recoveries,
               c.finished ? "" : " (" + c.error + ")");
  }
}

// A row's role: calibration when its profile (or, for a scenario without one, its own
// `calibration`) fits something on it; every other row is a prediction.
std::string role_of(const ScenarioFile& file, const RowConfig& row, const std::vector<Calibrated>& calibrated) {
  if (file.profile && file.profile->is_calibration_row(file.stem, row.name)) return "calibration";
  for (const auto& c : calibrated) {
    if (c.row == row.name) return "calibration";
  }
  return "prediction";
}

// Runs every row of `file` (rows with the same overrides once) and returns them for the summary;
// with `print`, prints the scenario's table as `bouquet sim FILE` does.
std::vector<SummaryRow> run_rows(const ScenarioFile& file, const std::vector<Calibrated>& calibrated, bool print,
                                 nlohmann::json* json) {
  std::vector<SummaryRow> out;
  if (print) {
    fmt::print("{:<28} {:>14} {:>10} {:>10} {:>8}  {:<11} {:<9}  {}\n", "row", "simulated", "published", "unit",
               "error", "role", "source", "simulated end");
  }
  std::map<std::vector<std::pair<std::string, std::string>>, RunResult> runs;
  for (size_t i = 0; i < file.rows.size(); ++i) {
    const RowConfig& row = file.rows[i];
    const auto row_started = std::chrono::steady_clock::now();
    auto known = runs.find(row.set);
    if (known == runs.end()) known = runs.emplace(row.set, simulate_isolated(file.row_scenarios[i])).first;
    const RunResult& result = known->second;
    SummaryRow summary;
    summary.name = file.stem + "/" + row.name;
    summary.metric = row.metric;
    summary.simulated = result.metric(row.metric);
    summary.published = row.published;
    summary.published_did_not_finish = row.published_did_not_finish;
    summary.role = role_of(file, row, calibrated);
    // A row without a published figure has no source to rate.
    const bool has_figure = row.published.has_value() || row.published_did_not_finish;
    summary.quality = has_figure ? row.quality : "-";
    const double error = summary.error();
    const std::string published = row.published_did_not_finish ? "dnf" : (row.published ? number(*row.published) : "-");
    if (print) {
      fmt::print("{:<28} {:>14} {:>10} {:>10} {:>8}  {:<11} {:<9}  [t={:.3f}s]{}\n", row.name,
                 number(summary.simulated), published, unit(row.metric),
                 std::isnan(error) ? "-" : fmt::format("{:+.1f}%", 100 * error), summary.role, summary.quality,
                 result.end_s, recoveries(result));
      if (!result.all_finished()) print_clients(result);
    }
    fmt::print(stderr, "row {}: {:.2f} s wall\n", row.name, wall_s(row_started));
    if (json) {
      (*json)["rows"].push_back(
          {{"name", row.name},
           {"metric", row.metric},
           {"simulated", std::isnan(summary.simulated) ? nlohmann::json() : nlohmann::json(summary.simulated)},
           {"published", row.published ? nlohmann::json(*row.published) : nlohmann::json()},
           {"published_did_not_finish", row.published_did_not_finish},
           {"relative_error", std::isnan(error) ? nlohmann::json() : nlohmann::json(error)},
           {"source", row.source},
           {"quality", has_figure ? nlohmann::json(row.quality) : nlohmann::json()},
           {"role", summary.role},
           {"calibration", summary.role == "calibration"},
           {"result", nlohmann::json::parse(to_json(result))}});
    }
    out.push_back(std::move(summary));
  }
  return out;
}

int run_calibrate(const SimCommandConfig& config) {
  const Profile profile = load_profile(config.scenario);
  fmt::print("profile {}: fitting", profile.name);
  for (const auto& p : profile.parameters) {
    if (p.fitted()) fmt::print(" {}", p.key);
  }
  fmt::print(" on {} calibration rows\nprocedure: {}\n", profile.calibration_rows().size(), profile.procedure);
  const ProfileFit fit = fit_profile(profile);
  fmt::print("{:<24} {:>12} {:>12}\n", "parameter", "was", "fitted");
  for (const auto& [key, value] : fit.after) {
    fmt::print("{:<24} {:>12.4g} {:>12.4g}\n", key, fit.before.at(key), value);
  }
  fmt::print("{:<48} {:>10} {:>10} {:>8}\n", "calibration row", "simulated", "published", "error");
  for (const auto& row : fit.rows) {
    fmt::print("{:<48} {:>10} {:>10} {:>+7.1f}%\n", row.name, number(row.simulated), number(row.published),
               100 * (row.simulated / row.published - 1));
  }
  fmt::print("sum of squared log errors {:.4g} after {} iterations, {} simulations\n", fit.sum_squared_log_error,
             fit.iterations, fit.simulations);
  write_profile_values(profile, fit.after);
  fmt::print("wrote the fitted values into {}\n", profile.path);
  return 0;
}

int run_summary(const SimCommandConfig& config) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(config.scenario)) {
    // The fidelity scenarios need the device file scripts/fidelity.sh measures on the machine at hand.
    const bool fidelity = entry.path().filename().string().rfind("fidelity-", 0) == 0;
    if (entry.is_regular_file() && entry.path().extension() == ".yaml" && !fidelity) {
      paths.push_back(entry.path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) throw ScenarioError(fmt::format("{}: no scenario files (*.yaml) here", config.scenario));
  // Every file is checked before anything runs.
  std::vector<ScenarioFile> files;
  for (const auto& path : paths) files.push_back(load_scenario_file(path, config.set));
  std::vector<SummaryRow> rows;
  for (auto& file : files) {
    const std::vector<Calibrated> calibrated = calibrate(file);
    for (auto& row : run_rows(file, calibrated, false, nullptr)) rows.push_back(std::move(row));
  }
  fmt::print("{}", format_summary(rows, summarize(rows)));
  return 0;
}

}  // namespace

int run_sim_command(const SimCommandConfig& config) {
  if (config.calibrate) return run_calibrate(config);
  if (config.summary) return run_summary(config);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> overrides = config.set;
  if (config.seed) overrides.push_back(fmt::format("seed={}", *config.seed));
  ScenarioFile file = load_scenario_file(config.scenario, overrides);
  print_header(file, config);
  if (file.profile) fmt::print("profile {} ({})\n", file.profile->name, file.profile->path);

  nlohmann::json json = {{"scenario", file.base.name},
                         {"file", config.scenario},
                         {"seed", file.base.seed},
                         {"reproduce", reproduce_command(config, file.base.seed)}};
  std::vector<Calibrated> calibrated = calibrate(file);
  for (const auto& c : calibrated) {
    fmt::print("calibrated {} efficiency {:.4f} on row {} (published {} {}); every other row is a prediction\n",
               c.format, c.efficiency, c.row, number(c.published), unit(c.metric));
    json["calibration"].push_back({{"format", c.format}, {"efficiency", c.efficiency}, {"row", c.row}});
  }
  if (file.rows.empty()) {
    RunResult result = simulate_isolated(file.base);
    fmt::print("simulated {:.3f} s, {} messages, {} bytes\n", result.end_s, result.messages, result.bytes);
    if (!std::isnan(result.swarm_rps)) {
      fmt::print("placement {}: weakest block {} rps when the first client starts{}; {} rebalancing moves\n",
                 file.base.policies.placement, number(result.swarm_rps),
                 std::isnan(result.swarm_rps_bound)
                     ? ""
                     : fmt::format(" (no placement beats {})", number(result.swarm_rps_bound)),
                 result.moves);
    }
    print_clients(result);
    json["result"] = nlohmann::json::parse(to_json(result));
  } else {
    run_rows(file, calibrated, true, &json);
  }
  json["wall_s"] = wall_s(started);
  fmt::print(stderr, "{}: {:.2f} s wall in all\n", config.scenario, wall_s(started));
  if (!config.out.empty()) {
    std::ofstream out(config.out);
    if (!out) throw SimulationError(fmt::format("{}: cannot write the results", config.out));
    out << json.dump(2) << "\n";
  }
  // Work that did not finish is a result (printed as such), not a failure of the command.
  return 0;
}

}  // namespace bouquet::sim

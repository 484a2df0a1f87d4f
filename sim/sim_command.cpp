#include "sim/sim_command.h"

#include "sim/calibration.h"
#include "sim/isolated_run.h"
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
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

}  // namespace

int run_sim_command(const SimCommandConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> overrides = config.set;
  if (config.seed) overrides.push_back(fmt::format("seed={}", *config.seed));
  ScenarioFile file = load_scenario_file(config.scenario, overrides);
  print_header(file, config);

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
    fmt::print("{:<28} {:>14} {:>10} {:>10} {:>8}  {}\n", "row", "simulated", "published", "unit", "error",
               "simulated end");
    // Rows with the same overrides are the same simulation: run it once, report it per metric.
    std::map<std::vector<std::pair<std::string, std::string>>, RunResult> runs;
    for (size_t i = 0; i < file.rows.size(); ++i) {
      const RowConfig& row = file.rows[i];
      const auto row_started = std::chrono::steady_clock::now();
      auto known = runs.find(row.set);
      if (known == runs.end()) known = runs.emplace(row.set, simulate_isolated(file.row_scenarios[i])).first;
      const RunResult& result = known->second;
      const double value = result.metric(row.metric);
      const bool compared = row.published && !std::isnan(value);
      const double error = compared ? (value - *row.published) / *row.published : 0.0;
      bool is_calibration = false;
      for (const auto& c : calibrated) is_calibration |= c.row == row.name;
      fmt::print("{:<28} {:>14} {:>10} {:>10} {:>8}  [t={:.3f}s]{}{}\n", row.name, number(value),
                 row.published ? number(*row.published) : "-", unit(row.metric),
                 compared ? fmt::format("{:+.1f}%", 100 * error) : "-", result.end_s,
                 is_calibration ? " (calibration)" : "", recoveries(result));
      if (!result.all_finished()) print_clients(result);
      fmt::print(stderr, "row {}: {:.2f} s wall\n", row.name, wall_s(row_started));
      json["rows"].push_back({{"name", row.name},
                              {"metric", row.metric},
                              {"simulated", std::isnan(value) ? nlohmann::json() : nlohmann::json(value)},
                              {"published", row.published ? nlohmann::json(*row.published) : nlohmann::json()},
                              {"relative_error", compared ? nlohmann::json(error) : nlohmann::json()},
                              {"source", row.source},
                              {"calibration", is_calibration},
                              {"result", nlohmann::json::parse(to_json(result))}});
    }
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

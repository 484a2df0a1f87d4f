#include "sim/sweep/metrics.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <limits>
#include <stdexcept>

namespace bouquet::sim::sweep {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::string_view kRowPrefix = "rows.";

double mean_of(const nlohmann::json& clients, const char* field) {
  if (clients.empty()) return kNaN;
  double sum = 0;
  for (const auto& c : clients) sum += c.at(field).get<double>();
  return sum / static_cast<double>(clients.size());
}

double sum_of(const nlohmann::json& clients, const char* field) {
  double sum = 0;
  for (const auto& c : clients) sum += c.at(field).get<double>();
  return sum;
}

double run_metric(const nlohmann::json& result, std::string_view name) {
  const nlohmann::json& clients = result.at("clients");
  if (name == "tokens_per_s") return mean_of(clients, "tokens_per_s");
  if (name == "steps_per_s") return mean_of(clients, "steps_per_s");
  if (name == "total_tokens_per_s") return sum_of(clients, "tokens_per_s");
  if (name == "sessions_finished") return sum_of(clients, "sessions_finished");
  if (name == "sessions_failed") return sum_of(clients, "sessions_failed");
  if (name == "finished_session_share") {
    const double finished = sum_of(clients, "sessions_finished");
    const double ended = finished + sum_of(clients, "sessions_failed");
    return ended > 0 ? finished / ended : kNaN;
  }
  if (name == "tokens") return sum_of(clients, "tokens");
  if (name == "recoveries") return sum_of(clients, "recoveries");
  if (name == "positions_replayed") return sum_of(clients, "positions_replayed");
  if (name == "finished_share") {
    if (clients.empty()) return kNaN;
    double finished = 0;
    for (const auto& c : clients) finished += c.at("finished").get<bool>() ? 1 : 0;
    return finished / static_cast<double>(clients.size());
  }
  if (name == "step_latency_p50_s" || name == "step_latency_p99_s") {
    const auto& value = result.at(std::string(name));
    return value.is_null() ? kNaN : value.get<double>();
  }
  if (name == "uncovered_s" || name == "swarm_rps" || name == "swarm_rps_bound") {
    // Older run files lack the placement figures: NaN, like a run that did not measure them.
    if (!result.contains(std::string(name))) return kNaN;
    const auto& value = result.at(std::string(name));
    return value.is_null() ? kNaN : value.get<double>();
  }
  if (name == "moves") return result.contains("moves") ? result.at("moves").get<double>() : kNaN;
  if (name == "uncovered_share") {
    const auto& uncovered = result.at("uncovered_s");
    const auto& watched = result.at("coverage_watched_s");
    if (uncovered.is_null() || watched.is_null() || watched.get<double>() <= 0) return kNaN;
    return uncovered.get<double>() / watched.get<double>();
  }
  if (name == "end_s") return result.at("end_s").get<double>();
  if (name == "messages") return result.at("messages").get<double>();
  if (name == "bytes") return result.at("bytes").get<double>();
  throw std::runtime_error(fmt::format("no metric named '{}'", name));
}

double row_metric(const nlohmann::json& json, std::string_view row) {
  if (!json.contains("rows")) throw std::runtime_error("the scenario reported no rows");
  for (const auto& r : json.at("rows")) {
    if (r.at("name").get<std::string>() != row) continue;
    const auto& simulated = r.at("simulated");
    return simulated.is_null() ? kNaN : simulated.get<double>();
  }
  throw std::runtime_error(fmt::format("the scenario reported no row '{}'", row));
}

}  // namespace

const std::vector<MetricInfo>& known_metrics() {
  static const std::vector<MetricInfo> metrics = {
      {"tokens_per_s", "tokens/s", "tokens per second per client while it worked (mean over clients)", true},
      {"steps_per_s", "steps/s", "generation steps per second per client while it worked (mean over clients)", true},
      {"total_tokens_per_s", "tokens/s", "tokens per second of all clients together (sum of their rates)", true},
      {"finished_session_share", "share",
       "share of the generation sessions that ended which ran to their last step (the rest failed)", true},
      {"sessions_finished", "sessions", "generation sessions that ran to their last step, in all", true},
      {"sessions_failed", "sessions", "generation sessions the clients gave up on, in all", false},
      {"finished_share", "share", "share of clients that finished all their work within the duration", true},
      {"step_latency_p50_s", "s", "median latency of a single-token generation step, over every client's steps", false},
      {"step_latency_p99_s", "s", "99th percentile of the single-token generation step latency", false},
      {"uncovered_s", "s", "simulated seconds, from the first client's start, during which some block had no server",
       false},
      {"uncovered_share", "share",
       "share of the time from the first client's start during which some block had no server", false},
      {"swarm_rps", "rps",
       "the weakest block's throughput (servers' announced rps summed per block) when the first client starts", true},
      {"swarm_rps_bound", "rps",
       "placement best: no placement's weakest block beats this (equal to swarm_rps when the search was exact)", true},
      {"moves", "moves", "rebalancing moves of all servers, in all", false},
      {"tokens", "tokens", "tokens processed or generated by all clients", true},
      {"recoveries", "recoveries", "failed hops the clients' sessions replaced, in all", false},
      {"positions_replayed", "positions", "positions those recoveries processed again, in all", false},
      {"end_s", "s", "simulated time when the run stopped", false},
      {"messages", "messages", "messages sent", false},
      {"bytes", "bytes", "bytes sent", false},
  };
  return metrics;
}

MetricInfo find_metric(std::string_view name, bool* known) {
  *known = true;
  for (const auto& m : known_metrics()) {
    if (m.name == name) return m;
  }
  if (name.starts_with(kRowPrefix) && name.size() > kRowPrefix.size()) {
    return {std::string(name), "", fmt::format("the simulated figure of row '{}'", name.substr(kRowPrefix.size())),
            true};
  }
  *known = false;
  return {};
}

std::vector<double> extract_metrics(const std::string& json_text, const std::vector<std::string>& names) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("the results are not JSON: {}", e.what()));
  }
  std::vector<double> values;
  try {
    for (const auto& name : names) {
      if (std::string_view(name).starts_with(kRowPrefix)) {
        values.push_back(row_metric(json, std::string_view(name).substr(kRowPrefix.size())));
      } else if (json.contains("result")) {
        values.push_back(run_metric(json.at("result"), name));
      } else {
        throw std::runtime_error(fmt::format("metric '{}' needs a scenario without rows", name));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("the results lack a field: {}", e.what()));
  }
  return values;
}

}  // namespace bouquet::sim::sweep

#include "sim/run_result.h"

#include "core/check.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace bouquet::sim {

bool RunResult::all_finished() const {
  for (const auto& client : clients) {
    if (!client.finished) return false;
  }
  return !clients.empty();
}

double RunResult::metric(std::string_view name) const {
  if (!all_finished()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  if (name == "failed_session_share") {
    int64_t failed = 0, ended = 0;
    for (const auto& client : clients) {
      failed += client.sessions_failed;
      ended += client.sessions_failed + client.sessions_finished;
    }
    return ended > 0 ? static_cast<double>(failed) / static_cast<double>(ended) : 0.0;
  }
  for (const auto& client : clients) {
    if (name == "steps_per_s") {
      sum += client.steps_per_s();
    } else {
      BOUQUET_CHECK(name == "tokens_per_s" || name == "total_tokens_per_s",
                    "metric names are checked by the scenario loader");
      sum += client.tokens_per_s();
    }
  }
  return name == "total_tokens_per_s" ? sum : sum / static_cast<double>(clients.size());
}

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {"steps_per_s", "tokens_per_s", "total_tokens_per_s",
                                                 "failed_session_share"};
  return names;
}

std::string_view metric_unit(std::string_view name) {
  if (name == "steps_per_s") return "steps/s";
  if (name == "failed_session_share") return "share";
  return "tokens/s";
}

namespace {

// The nearest-rank percentile of sorted values: the smallest value with at least p of them at or
// below it.
double nearest_rank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json() : nlohmann::json(value); }

double number_or_nan(const nlohmann::json& in, const char* key) {
  if (!in.contains(key) || in.at(key).is_null()) return std::numeric_limits<double>::quiet_NaN();
  return in.at(key).get<double>();
}

}  // namespace

void RunResult::summarize_step_latencies() {
  std::vector<double> all;
  for (const auto& client : clients)
    all.insert(all.end(), client.step_latencies_s.begin(), client.step_latencies_s.end());
  std::sort(all.begin(), all.end());
  step_latency_p50_s = nearest_rank(all, 0.50);
  step_latency_p99_s = nearest_rank(all, 0.99);
}

namespace {

nlohmann::json hops_json(const std::vector<NamedHop>& hops) {
  nlohmann::json out = nlohmann::json::array();
  for (const NamedHop& h : hops) out.push_back({{"server", h.server}, {"blocks", {h.begin, h.end}}});
  return out;
}

std::vector<NamedHop> hops_from_json(const nlohmann::json& in) {
  std::vector<NamedHop> out;
  for (const auto& h : in)
    out.push_back({h.at("server").get<std::string>(), h.at("blocks").at(0), h.at("blocks").at(1)});
  return out;
}

}  // namespace

std::string to_json(const RunResult& result) {
  nlohmann::json clients = nlohmann::json::array();
  for (const auto& c : result.clients) {
    nlohmann::json routes = nlohmann::json::array();
    for (const RouteEvent& r : c.routes) {
      nlohmann::json event = {{"kind", r.kind}, {"hops", hops_json(r.hops)}};
      if (r.kind == "recovered") {
        event["blocks"] = {r.begin, r.end};
        event["failed_server"] = r.failed_server;
      }
      routes.push_back(event);
    }
    clients.push_back({{"name", c.name},
                       {"kind", c.kind},
                       {"finished", c.finished},
                       {"error", c.error},
                       {"steps", c.steps},
                       {"tokens", c.tokens},
                       {"measured_s", c.measured_s},
                       {"recoveries", c.recoveries},
                       {"positions_replayed", c.positions_replayed},
                       {"recovery_s", c.recovery_s},
                       {"sessions_finished", c.sessions_finished},
                       {"sessions_failed", c.sessions_failed},
                       {"started_s", c.started_s},
                       {"ended_s", c.ended_s},
                       {"steps_per_s", c.steps_per_s()},
                       {"tokens_per_s", c.tokens_per_s()},
                       {"routes", routes}});
  }
  nlohmann::json placement = nlohmann::json::array();
  for (const auto& p : result.placement) {
    nlohmann::json spans = nlohmann::json::array();
    for (const auto& [begin, end] : p.spans) spans.push_back({begin, end});
    placement.push_back({{"server", p.server}, {"spans", spans}});
  }
  nlohmann::json out = {{"seed", result.seed},
                        {"end_s", result.end_s},
                        {"messages", result.messages},
                        {"bytes", result.bytes},
                        {"step_latency_p50_s", number_or_null(result.step_latency_p50_s)},
                        {"step_latency_p99_s", number_or_null(result.step_latency_p99_s)},
                        {"uncovered_s", number_or_null(result.uncovered_s)},
                        {"coverage_watched_s", number_or_null(result.coverage_watched_s)},
                        {"swarm_rps", number_or_null(result.swarm_rps)},
                        {"swarm_rps_bound", number_or_null(result.swarm_rps_bound)},
                        {"moves", result.moves},
                        {"placement", placement},
                        {"clients", clients}};
  return out.dump();
}

RunResult run_result_from_json(const std::string& text) {
  nlohmann::json in = nlohmann::json::parse(text);
  RunResult result;
  result.seed = in.at("seed").get<uint64_t>();
  result.end_s = in.at("end_s").get<double>();
  result.messages = in.at("messages").get<uint64_t>();
  result.bytes = in.at("bytes").get<uint64_t>();
  result.step_latency_p50_s = number_or_nan(in, "step_latency_p50_s");
  result.step_latency_p99_s = number_or_nan(in, "step_latency_p99_s");
  result.uncovered_s = number_or_nan(in, "uncovered_s");
  result.coverage_watched_s = number_or_nan(in, "coverage_watched_s");
  result.swarm_rps = number_or_nan(in, "swarm_rps");
  result.swarm_rps_bound = number_or_nan(in, "swarm_rps_bound");
  if (in.contains("moves")) result.moves = in.at("moves").get<uint64_t>();
  for (const auto& p : in.value("placement", nlohmann::json::array())) {
    RunResult::ServerSpans spans{p.at("server").get<std::string>(), {}};
    for (const auto& s : p.at("spans")) spans.spans.emplace_back(s.at(0), s.at(1));
    result.placement.push_back(std::move(spans));
  }
  for (const auto& c : in.at("clients")) {
    ClientResult client;
    client.name = c.at("name").get<std::string>();
    client.kind = c.at("kind").get<std::string>();
    client.finished = c.at("finished").get<bool>();
    client.error = c.at("error").get<std::string>();
    client.steps = c.at("steps").get<int64_t>();
    client.tokens = c.at("tokens").get<int64_t>();
    client.measured_s = c.at("measured_s").get<double>();
    client.recoveries = c.at("recoveries").get<int64_t>();
    client.positions_replayed = c.at("positions_replayed").get<int64_t>();
    client.recovery_s = c.value("recovery_s", 0.0);
    client.sessions_finished = c.at("sessions_finished").get<int64_t>();
    client.sessions_failed = c.at("sessions_failed").get<int64_t>();
    client.started_s = c.at("started_s").get<double>();
    client.ended_s = c.at("ended_s").get<double>();
    for (const auto& r : c.value("routes", nlohmann::json::array())) {
      RouteEvent event;
      event.kind = r.at("kind").get<std::string>();
      event.hops = hops_from_json(r.at("hops"));
      if (event.kind == "recovered") {
        event.begin = r.at("blocks").at(0);
        event.end = r.at("blocks").at(1);
        event.failed_server = r.at("failed_server").get<std::string>();
      }
      client.routes.push_back(std::move(event));
    }
    result.clients.push_back(client);
  }
  return result;
}

}  // namespace bouquet::sim

// What one simulation measured: per client, the work done and the simulated time it took; for
// the run, the traffic. Serialized as JSON to cross the process boundary (isolated_run.h) and
// for `bouquet sim --out`.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim {

// A hop of a chain, by the server's host name.
struct NamedHop {
  std::string server;
  int64_t begin = 0;
  int64_t end = 0;
};
// The chain a client's first session opened, and each recovery of it: what failed and what took
// the failed blocks over (what `bouquet generate --json` reports as "route" and "recoveries").
struct RouteEvent {
  std::string kind;   // opened | recovered
  int64_t begin = 0;  // recovered: the blocks re-planned
  int64_t end = 0;
  std::string failed_server;  // recovered: the server that failed
  std::vector<NamedHop> hops;
};

struct ClientResult {
  std::string name;
  std::string kind;  // generate | forward | backward, "offload-" prefixed when offloading
  bool finished = false;
  std::string error;               // why it stopped early, if it did
  int64_t steps = 0;               // generation steps (every session) or passes
  int64_t tokens = 0;              // positions processed (forward/backward) or generated
  double measured_s = 0;           // simulated time of the measured work (session setup excluded)
  int64_t recoveries = 0;          // hops the core's session replaced (or restarts)
  int64_t positions_replayed = 0;  // positions those replacements had to process again
  double recovery_s = 0;           // summed over the recoveries that succeeded: noticed to caught up
  int64_t sessions_finished = 0;   // generation sessions that ran to their last step
  int64_t sessions_failed = 0;     // sessions the core gave up on (continuous clients go on)
  double started_s = -1;
  double ended_s = -1;
  // Simulated seconds of each single-token generation step that completed (each session's prompt
  // step left out): from handing the step to the session to its result, recoveries included.
  // Kept for RunResult's percentiles; not serialized.
  std::vector<double> step_latencies_s;
  std::vector<RouteEvent> routes;  // the first generation session's only

  double steps_per_s() const { return measured_s > 0 ? static_cast<double>(steps) / measured_s : 0; }
  double tokens_per_s() const { return measured_s > 0 ? static_cast<double>(tokens) / measured_s : 0; }
};

struct RunResult {
  uint64_t seed = 0;
  double end_s = 0;  // simulated time when the run stopped
  uint64_t messages = 0;
  uint64_t bytes = 0;
  std::vector<ClientResult> clients;
  // Over every client's step_latencies_s (nearest rank); NaN when no such step completed.
  double step_latency_p50_s = std::numeric_limits<double>::quiet_NaN();
  double step_latency_p99_s = std::numeric_limits<double>::quiet_NaN();

  // Simulated seconds, probed each second from the first client's start to the end of the run,
  // during which some block had no server serving it (hosts on, spans loaded); NaN without
  // servers or clients. coverage_watched_s: the seconds probed.
  double uncovered_s = std::numeric_limits<double>::quiet_NaN();
  double coverage_watched_s = std::numeric_limits<double>::quiet_NaN();

  // Placement: the weakest block's throughput (announced rps of the servers really serving each
  // block) when the first client starts; NaN without servers or clients. With placement "best",
  // swarm_rps_bound is an upper bound on it for any placement (equal to it when the search was
  // exact), else NaN. moves: rebalancing moves of all server processes.
  double swarm_rps = std::numeric_limits<double>::quiet_NaN();
  double swarm_rps_bound = std::numeric_limits<double>::quiet_NaN();
  uint64_t moves = 0;
  // Every server process's spans, in the order it served them (churn: each incarnation).
  struct ServerSpans {
    std::string server;
    std::vector<std::pair<int64_t, int64_t>> spans;
  };
  std::vector<ServerSpans> placement;

  // Fills the percentiles from the clients' step latencies (the simulation calls it at its end).
  void summarize_step_latencies();

  bool all_finished() const;
  // A row's figure (metric_names()); NaN when some client did not finish.
  double metric(std::string_view name) const;
};

// steps_per_s and tokens_per_s: means over clients; total_tokens_per_s: the clients' tokens/s
// summed; failed_session_share: failed sessions among those that ended, over all clients.
const std::vector<std::string>& metric_names();
// How a metric's value reads: "steps/s", "tokens/s" or "share".
std::string_view metric_unit(std::string_view name);

std::string to_json(const RunResult& result);
RunResult run_result_from_json(const std::string& text);

}  // namespace bouquet::sim

// `bouquet bench-sim`: how fast the simulator itself runs. It times a scenario (by default the
// 100-server, 100-client swarm with churn) and then a bare SimGrid mailbox ping-pong that moves
// the same number of messages of the scenario's mean size between pairs of hosts, and prints
// simulated messages per wall-clock second for both: the ratio is what the core's state machines,
// the drivers and the cost model cost on top of SimGrid itself. With a scale K, every server and
// client group of the scenario counts K times as many (swarm-100x100 at K = 10: 1000 servers and
// 1000 clients), which shows how the cost per message grows with the swarm. A benchmark, not a
// test: its figures depend on the machine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bouquet::sim {

struct BenchSimConfig {
  std::string scenario = "scenarios/swarm-100x100.yaml";
  std::optional<uint64_t> seed;  // replaces the scenario's seed
  int64_t pairs = 100;           // ping-pong: pairs of hosts exchanging messages at once
  int64_t scale = 1;             // multiplies every server and client group's count
  std::vector<std::string> set;  // --set key.path=value overrides, as `bouquet sim` takes them
};

struct BenchSimResult {
  uint64_t messages = 0;       // what the scenario sent, and the ping-pong too
  uint64_t bytes = 0;          // what the scenario sent
  double scenario_end_s = 0;   // simulated
  double scenario_wall_s = 0;  // the simulation alone (no process start, no file reading)
  double scenario_cpu_s = 0;   // its processor time: what a shared machine does not inflate
  int64_t servers = 0;         // server and client processes the scenario starts with
  int64_t clients = 0;
  double rss_start_mb = 0;  // resident memory of the simulating process before the run
  double rss_peak_mb = 0;   // and its peak (the process's high-water mark)
  double pingpong_end_s = 0;
  double pingpong_wall_s = 0;
  double pingpong_cpu_s = 0;
};

BenchSimResult bench_sim(const BenchSimConfig& config);
std::string format_bench_sim(const BenchSimConfig& config, const BenchSimResult& result);

}  // namespace bouquet::sim

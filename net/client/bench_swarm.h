// `bouquet bench-swarm`: what the network costs. Per-token decode latency of a generation through
// three `bouquet serve` processes on loopback, against every block in this process
// (`generate --local`), in the same run, on the same model files, one compute thread per process.
// Models: the tiny test model, and three blocks shaped like Llama-2-7B (hidden 4096, MLP 11008,
// 32 heads, vocabulary 32000) with random weights, written to a temporary folder on the fly.
// Each decode step is timed alone; the median step over all rounds is reported, with the ratio
// and the overhead per hop: (swarm - local) / hops.
//
// With --spot-check-rate R1,R2,... a spare server joins for each span (so checks have a second
// server) and each round also generates at every rate (core/spot_check.h): tokens/s there is the
// mean over decode steps, not the median, since a check lengthens only the steps it falls on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bouquet::net {

// Field names are the flag names.
struct BenchSwarmConfig {
  std::string models = "tiny,llama-2-7b";  // which of the two to run
  int64_t prompt_tokens = 16;
  int64_t new_tokens = 16;  // decode steps timed per round: new_tokens - 1
  int64_t rounds = 3;       // local and swarm alternate
  int threads = 1;          // compute threads per process
  std::string compression = "none";
  std::string dir;                      // where to write the models; "" = a fresh temporary folder, removed after
  std::vector<double> spot_check_rate;  // rates to generate at too, each in [0, 1]; empty = none
  bool json = false;
  uint64_t seed = 0;
};

// Generation at one spot check rate, through the same servers plus a spare per span.
struct SpotCheckCost {
  double rate = 0;
  double ms_per_token = 0;  // mean over every decode step of every round
  double tokens_per_s = 0;
  int64_t checks = 0;  // spot checks made, over every round
  bool same_ids = false;
};

struct BenchSwarmRow {
  std::string model;
  int64_t blocks = 0;
  int64_t hidden = 0;
  double local_ms_per_token = 0;
  double swarm_ms_per_token = 0;
  double ratio = 0;                // swarm / local
  double per_hop_overhead_ms = 0;  // (swarm - local) / hops
  int64_t hops = 0;
  bool same_ids = false;  // greedy ids of the two runs agree
  std::vector<SpotCheckCost> spot_checks;
};

struct BenchSwarmResult {
  std::vector<BenchSwarmRow> rows;
  double loopback_round_trip_ms = 0;  // a bare 16 KiB TCP round trip, for scale
  int threads = 1;
  std::string compression;
};

BenchSwarmResult bench_swarm(const BenchSwarmConfig& config);
std::string format_bench_swarm(const BenchSwarmResult& result);
std::string bench_swarm_json(const BenchSwarmResult& result);

}  // namespace bouquet::net

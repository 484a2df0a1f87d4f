// A simulation scenario: the YAML file's structure as config structs. Field names are the YAML
// keys (and the --set paths). load_scenario_file() reads a file strictly and checks every value
// and cross-reference before anything runs; a scenario that loads is one the simulator can run.
//
// A file describes one base scenario plus `rows`: each row re-reads the file with its own `set`
// overrides (e.g. another network setting or workload) and names the metric it reports and the
// published figure it is compared with. `calibration` names, per weight format, the one row whose
// published figure fixes that format's efficiency; every other row is a prediction.
#pragma once

#include "core/planners.h"
#include "sim/cost_model.h"
#include "sim/profile.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace bouquet::sim {

inline constexpr double kForever = std::numeric_limits<double>::infinity();

// The SimGrid network model. CM02 without cross-traffic gives a transfer exactly latency plus
// size over bandwidth (bounded by the TCP window over the round trip), which is what
// tc-emulated links measure; LV08 adds SimGrid's TCP corrections. Each scenario says why.
struct NetworkConfig {
  std::string model = "CM02";  // CM02 | LV08
  bool crosstraffic = false;
  double tcp_window_bytes = 4194304;  // SimGrid's TCP-gamma: a flow's rate <= window / RTT
  std::string why;
};

struct ModelConfig {
  std::string name;  // a model of model_shapes.h, or with `shape` a label of one's own
  // A model given by its shape instead of by name (a `make-tiny-model` model): the cost of a block
  // follows from these numbers exactly as for a published model.
  std::optional<ModelShape> shape;
  std::string weights;                    // f32 | f16 | int8 | nf4
  std::string activations = "float16";    // dtype of hidden states: float32 | float16 | bfloat16
  std::string wire_compression = "none";  // none | float16 | int8_blockwise
};

struct CalibrationConfig {
  std::string format;  // weight format whose efficiency is solved for
  std::string row;     // the row whose published figure it must reproduce
};

// Default access link of the hosts in a region (consumer links: up and down differ).
struct RegionConfig {
  std::string name;
  double up_bps = 0;
  double down_bps = 0;
  double latency_s = 0;  // one way, host to the region's core; a round trip inside is 4x this
};

struct LongHaulConfig {
  std::string from;
  std::string to;
  double bandwidth_bps = 0;
  double latency_s = 0;
};

// A relay through which firewalled hosts are reached: all their traffic crosses its link.
struct RelayConfig {
  std::string name;
  std::string region;
  double bandwidth_bps = 0;
  double latency_s = 0;
};

// How a host attaches to its region; unset fields take the region's values.
struct HostLinkConfig {
  std::string region;
  std::optional<double> up_bps;
  std::optional<double> down_bps;
  std::optional<double> latency_s;
  std::string relay;  // "" = directly reachable
};

struct BlockRange {
  int64_t begin = 0;
  int64_t end = 0;
};

struct ServerConfig {
  std::string name;
  int64_t count = 1;  // identical servers name-0, name-1, ... (name alone when 1)
  std::string gpu;
  HostLinkConfig link;
  std::optional<BlockRange> blocks;  // [begin, end) pinned; absent ("auto") = the balancer places it
  int64_t num_blocks = 0;            // auto: blocks to hold; 0 = as many as the GPU memory allows
  int64_t cache_tokens = 0;          // per block; 0 = what the GPU memory left over holds
  int64_t compute_slots = 1;
  // Continuous batching (core/block_server.h): rows of queued decode steps merged into one
  // computation (1 = off, the published systems' behaviour) and the longest a step waits.
  int64_t max_batch = 0;       // 0: the policies' max_batch
  double batch_wait_ms = -1;   // < 0: the policies' batch_wait_ms
  int64_t prefill_chunk = -2;  // rows of a chunk of a longer step; 0 = never split; -2: the policies'
  double join_s = 0;
  double lifetime_s = kForever;
  // A fault drill counted in steps (what `serve --crash-after-steps` does): the server's process
  // dies on receiving its (N+1)-th inference step, so a failure lands at the same step in both
  // worlds; its connections are reset at once and new ones refused. 0: never.
  int64_t crash_after_steps = 0;
  // Where a joining server reads its blocks from (disk or network), in bits per second: it
  // announces itself joining, loads, then online. 0: the blocks are loaded before the run.
  double load_bps = 0;
  // A lying server (a fault drill): it announces its speeds multiplied by this; 1 = honest.
  double announce_speed_x = 1;
  // Announced speeds given instead of computed (what `serve --inference-rps` and `--throughput`
  // pin on a real server; the twin test pins both worlds alike). 0: from the cost model.
  double inference_rps = 0;
  double throughput_rps = 0;
};

struct WorkConfig {
  std::string kind;  // generate | forward | backward
  int64_t batch = 1;
  int64_t prefix_tokens = 1;      // generate: positions of the first step
  int64_t new_tokens = 0;         // generate: one-position steps after the first
  int64_t sequence_tokens = 128;  // forward/backward: positions per sequence
  int64_t repeat = 1;             // sessions or passes, one after another; 0 = until the run ends
};

// Offloading instead of a swarm: the client's own GPU streams every block from RAM.
struct OffloadConfig {
  std::string gpu;
  double pcie_bps = 0;
};

struct ClientConfig {
  std::string name;
  int64_t count = 1;
  std::string device;  // where embeddings and the LM head run
  HostLinkConfig link;
  WorkConfig work;
  std::optional<OffloadConfig> offload;
  double start_s = 0;
};

// Injected failures. An activation a server receives (a step, forward or backward request)
// fails with this probability: the server resets (caches lost, every session gone), drops it,
// and the sender sees the connection reset; the server serves again at once.
//
// Server churn: each server instance leaves without warning (its host goes off: caches,
// sessions and in-flight messages lost) after a lifetime drawn from an exponential distribution of
// mean `mean_lifetime_s`, and comes back after a downtime of mean `mean_downtime_s` as a fresh
// process: it joins again (loading its blocks at load_bps) and the balancer places it anew.
struct ChurnConfig {
  double activation_failure_probability = 0;
  double mean_lifetime_s = kForever;  // .inf: no churn
  double mean_downtime_s = 60;
};

struct PolicyConfig {
  // Generation: the core's planner of that name (core/planners.h: min_latency, greedy); passes
  // always use the core's throughput-proportional planner.
  core::Routing routing = core::Routing::min_latency;
  // min_latency adds each server's announced queueing delay (core/server_record.h's ServerLoad)
  // so clients spread over busy servers; false prices servers as if idle (the published system).
  bool load_aware_routing = true;
  // Continuous batching on every server that does not say otherwise (core/block_server.h): rows
  // of queued decode steps merged into one computation; 1 = off, the published system.
  int64_t max_batch = 1;
  double batch_wait_ms = 0;
  // Chunked prefill (core/block_server.h): rows of one chunk of a longer step (a prompt, a
  // replay), decode steps of other sessions running between chunks; 0 = never split; -1 = the
  // server's max batch when it batches (what `bouquet serve` does).
  int64_t prefill_chunk = -1;
  // Unpinned servers always pick their span on joining (the core's block selection); "rebalance"
  // also lets them move later when the swarm's weakest block would gain enough.
  std::string balancing = "none";  // none | rebalance
  // Where unpinned servers go on joining: greedy (the core's block selection), random (a uniform
  // first block), or best (the core's best_placement over every server of the scenario, known in
  // advance: the spans are pinned, so such servers never move).
  std::string placement = "greedy";  // greedy | random | best
  double balance_quality = 0.75;
  double balance_period_s = 60;
  double join_delay_s = 5;
  // replay | restart | cacheless | none | restart_from_scratch: the core's session policies
  // (core/recovery.h); restart_from_scratch is the reference paper's "caching with restarts"
  // baseline: a failure loses everything generated, and the client generates it again from its
  // first step on a fresh chain; only the attempt that gets through counts.
  std::string recovery = "replay";
  double recovery_deadline_s = 60;
  double ban_base_s = 15;  // 0: a failed server may be used again at once
  // Forward/backward: a pass goes out as concurrent sub-batches of at most this many positions
  // (whole sequences; core/sub_batches.h); 0 = one request with the whole batch.
  int64_t sub_batch_tokens = 1024;
  // Fraction of hop steps (and pass forwards) each client re-runs on a second server to catch a
  // lying one (core/spot_check.h); 0 = off. The simulator charges the checks' traffic and compute;
  // its handles carry no values, so every check agrees.
  double spot_check_rate = 0;
};

// The modelled DHT: announcements and lookups take a number of round trips of a fixed time.
// Servers re-announce every update period; their records expire as the core sets them.
struct DirectoryConfig {
  double round_trip_s = 0.05;
  int64_t lookup_round_trips = 2;
  int64_t announce_round_trips = 2;
  double update_period_s = 60;
};

struct RowConfig {
  std::string name;
  std::vector<std::pair<std::string, std::string>> set;  // key.path -> value, as --set
  // steps_per_s | tokens_per_s (means over clients), total_tokens_per_s (their sum),
  // failed_session_share (sessions that failed among those that ended)
  std::string metric;
  std::optional<double> published;        // absent: a prediction with nothing published to compare
  bool published_did_not_finish = false;  // `published: did not finish` (a run past the time limit)
  std::string source;                     // where the published figure comes from
  // How the published figure reached us: primary (the paper's own table), secondary (quoted by a
  // third party) or recalled (everything else: shown, never counted in the summary's targets).
  std::string quality = "recalled";
};

struct Scenario {
  int64_t version = 1;
  std::string name;
  std::string description;
  uint64_t seed = 0;
  double duration_s = 3600;  // simulated time limit; work not done by then "did not finish"
  NetworkConfig network;
  ModelConfig model;
  std::string profile;  // the implementation profile's name ("" = every cost figure in `cost`)
  CostModelConfig cost;
  FailureCost failure;               // what a failed server costs the client before recovery
  std::set<std::string> cost_given;  // figures ("int8.memory_eff") the scenario sets over its profile
  std::vector<RegionConfig> regions;
  std::vector<LongHaulConfig> long_haul;
  std::vector<RelayConfig> relays;
  std::vector<ServerConfig> servers;
  std::vector<ClientConfig> clients;
  ChurnConfig churn;
  PolicyConfig policies;
  DirectoryConfig directory;

  // Resolved from the names above by the loader (checked to exist).
  const ModelShape& shape() const;
  WeightFormat weight_format() const;
};

struct ScenarioFile {
  std::string path;
  std::vector<std::string> overrides;  // --set arguments, in order
  Scenario base;
  std::vector<RowConfig> rows;
  std::vector<CalibrationConfig> calibration;
  std::vector<Scenario> row_scenarios;  // base with each row's `set` applied, same order as rows
  std::optional<Profile> profile;       // the profile the base scenario names
  std::string stem;                     // the file's name without folder and .yaml: rows are STEM/ROW
};

// Sets a profile figure in `scenario` unless the scenario sets it itself.
void apply_profile_value(Scenario& scenario, const std::string& key, double value);

// Reads and checks `path` with the --set `overrides` applied (then each row's own). Throws
// ScenarioError naming file, line and key on the first problem.
ScenarioFile load_scenario_file(const std::string& path, const std::vector<std::string>& overrides);
// The same from text (tests); `name` stands for the file in messages.
ScenarioFile load_scenario_text(const std::string& text, const std::string& name,
                                const std::vector<std::string>& overrides);

// A server or client entry expanded by its count: "name" or "name-0", "name-1", ...
std::vector<std::string> instance_names(const std::string& name, int64_t count);

}  // namespace bouquet::sim

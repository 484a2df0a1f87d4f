// `bouquet generate --peers HOST:PORT,...` or `--initial-peers HOST:PORT,...` (DHT nodes: the
// servers are looked up in the directory, routed by min latency, and looked up again when a
// recovery re-plans): the networked path of the generate command. Same
// flags, prompt handling, sampling and output as `generate --local` (gpu/generate_local.h), but
// the client loads only its head (embeddings, final norm, LM head) and the tokenizer, and the
// blocks run on the servers: it asks each peer its span, routes a chain over all blocks with the
// core's planner and generates through it. `--json` prints the local command's object plus
// `route` (per hop: peer address and blocks), `expected_step_s` and `expected_tokens_per_s` (what
// routing expected of the route) and `compression`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/generate_local.h"
#include "net/client/remote_generation.h"

namespace bouquet::net {

class DhtDirectory;

// The flags of `generate --peers` that local generation has no use for (field names = flag names).
// The network's flags of the clients (generate, chat, finetune): where the servers are, what
// crosses the wire, how a failure is handled.
struct SwarmGenerateOptions {
  std::string peers;                 // "HOST:PORT,...": servers that together hold every block
  std::string compression = "none";  // on the wire: none, f16, int8
  std::string recovery = "replay";   // replay | restart | cacheless | restart_from_scratch (core/recovery.h)
  double recovery_deadline_s = 60;   // give up when no server covers a failed span for this long
  // core/planners.h; "" = greedy with --peers, min_latency with --initial-peers.
  std::string routing;
  // Discovery: DHT nodes to look the model's servers up through, instead of --peers.
  std::vector<std::string> initial_peers;
  std::string model_name;                // the model's name in the DHT; "" = the model folder's name
  std::string dht_listen = "0.0.0.0:0";  // UDP HOST:PORT of this client's own DHT node
  // Fraction of hop steps re-run on a second server and compared (core/spot_check.h).
  double spot_check_rate = core::kDefaultSpotCheckRate;
};

// The name a folder's model goes by in the DHT when no --model-name is given: its last component.
std::string default_model_name(const std::string& model_dir);

// What --initial-peers gives any client of the swarm (generate, finetune): joins the DHT, adds the
// model's online servers to client_config.peers and a fresh lookup as client_config.directory.
// The directory must outlive the client. Throws RemoteError when no DHT node answers in 10 s or
// the DHT lists no online server of the model.
std::unique_ptr<DhtDirectory> join_swarm_directory(SwarmClientConfig& client_config, const SwarmGenerateOptions& swarm,
                                                   const std::string& model_dir, uint32_t num_blocks,
                                                   const std::string& model_id);

// The session options the flags ask for (--compression, --recovery, --recovery-deadline,
// --routing: "" = greedy with --peers, min_latency with --initial-peers). Throws
// std::invalid_argument naming a bad value.
RemoteGenerationOptions remote_generation_options(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm);

// Throws RemoteError (a swarm failure, naming the server), gpu::InputError / ModelFileError
// (bad flags, a bad folder) or std::invalid_argument (a bad peer address or compression).
// `--json` adds `recoveries`: per recovery, blocks, failed peer, cause, replacement route,
// positions replayed and seconds taken; and `spot_checks`: per check, blocks, the server checked,
// the servers that re-ran its inputs, the step, the outcome and the liar found (if any).
RemoteGeneration generate_through_swarm(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm = {},
                                        const std::function<void(std::string_view)>& on_text = {});

std::string swarm_generation_json(const RemoteGeneration& generation, const std::string& compression);

// The command: streams text (or prints JSON with --json) like the local command. Exit status.
// Without --json, the stderr summary line also counts recoveries and names their replacements.
int run_generate_through_swarm(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm = {});

}  // namespace bouquet::net

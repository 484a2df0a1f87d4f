// `bouquet swarm`: parse flags into net::SwarmConfig and print what the directory holds.
#include "cli/command.h"
#include "net/dht/swarm_report.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration swarm_command{
    "swarm", "Print, per model and block, the servers the DHT knows and whether every block is covered",
    [](CLI::App& sub) {
      auto config = std::make_shared<net::SwarmConfig>();
      sub.add_option("--initial-peers", config->initial_peers, "HOST:PORT,... of DHT nodes")
          ->delimiter(',')
          ->required();
      sub.add_option("--model", config->model, "Only this model (default: every announced model)");
      sub.add_option("--num-blocks", config->num_blocks, "Blocks of the model (default: as announced)");
      sub.add_flag("--json", config->json, "Print one JSON object");
      sub.add_option("--listen", config->listen, "UDP HOST:PORT of this tool's own DHT node")->capture_default_str();
      return [config] { return net::run_swarm(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

// `bouquet dht`: parse flags into net::DhtNodeConfig and run a bare bootstrap node.
#include "cli/command.h"
#include "net/dht/dht_node.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration dht_command{
    "dht", "Run a bare DHT bootstrap node until SIGINT/SIGTERM", [](CLI::App& sub) {
      auto config = std::make_shared<net::DhtNodeConfig>();
      sub.add_option("--listen", config->listen, "UDP HOST:PORT to listen on (port 0: any free)")
          ->capture_default_str();
      sub.add_option("--initial-peers", config->initial_peers, "HOST:PORT,... of nodes to join through")
          ->delimiter(',');
      sub.add_option("--record-lifetime", config->record_lifetime_s,
                     "Seconds a stored record lives (same on every node)")
          ->capture_default_str();
      return [config] { return net::run_dht_node(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

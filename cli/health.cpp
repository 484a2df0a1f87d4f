// `bouquet health`: parse flags into HealthConfig and serve the swarm's health page.
#include "cli/command.h"
#include "net/health/health_server.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration health_command{
    "health", "Serve a live web page (and JSON) of the swarm: models, block coverage, servers, RTTs",
    [](CLI::App& sub) {
      auto config = std::make_shared<net::health::HealthConfig>();
      sub.add_option("--initial-peers", config->initial_peers, "HOST:PORT,... of DHT nodes")
          ->delimiter(',')
          ->required();
      sub.add_option("--listen", config->listen, "HTTP HOST:PORT (port 0: any free port)")->capture_default_str();
      sub.add_option("--model", config->model, "Only this model (default: every announced model)");
      sub.add_option("--refresh", config->refresh_s, "Seconds between reads of the swarm")
          ->capture_default_str()
          ->check(finite_in(0.1, 3600));
      sub.add_option("--dht-listen", config->dht_listen, "UDP HOST:PORT of this monitor's own DHT node")
          ->capture_default_str();
      return [config] { return net::health::run_health(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

// `bouquet link`: parse flags into net::LinkConfig and relay until SIGINT/SIGTERM.
#include "cli/command.h"
#include "net/link/link_relay.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration link_command{
    "link", "Relay TCP with a link's delay and bandwidth (a test tool: no tc netem here)", [](CLI::App& sub) {
      auto config = std::make_shared<net::LinkConfig>();
      sub.add_option("--listen", config->listen, "HOST:PORT to accept on (port 0: any free)")->capture_default_str();
      sub.add_option("--to", config->to, "Upstream HOST:PORT every connection is relayed to")->required();
      sub.add_option("--delay-ms", config->delay_ms, "One-way delay, milliseconds")
          ->required()
          ->check(finite_in(0, 1e6));
      sub.add_option("--jitter-ms", config->jitter_ms, "Extra delay per chunk, uniform in [0, J] ms")
          ->check(finite_in(0, 1e6));
      sub.add_option("--bandwidth-bps", config->bandwidth_bps, "Bits per second each way (0: unlimited)")
          ->check(finite_in(0, 1e15));
      sub.add_option("--cut-after-s", config->cut_after_s,
                     "Close every connection and stop accepting after S s (0: never)")
          ->check(finite_in(0, 1e9));
      sub.add_option("--seed", config->seed, "Seed of the jitter")->capture_default_str();
      return [config] { return net::run_link(*config); };
    }};

}  // namespace
}  // namespace bouquet::cli

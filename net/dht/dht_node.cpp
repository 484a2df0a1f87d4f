#include "net/dht/dht_node.h"

#include <fmt/core.h>

#include <csignal>
#include <cstdio>

#include "net/dht/dht_directory.h"

namespace bouquet::net {

int run_dht_node(const DhtNodeConfig& config) {
  // Block the stop signals before OpenDHT starts its threads (they inherit the mask), so that
  // only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  DhtDirectoryConfig dht;
  dht.listen = config.listen;
  dht.initial_peers = config.initial_peers;
  dht.record_lifetime_s = config.record_lifetime_s;
  DhtDirectory node(dht);
  fmt::print("dht: listening on {}\n", node.address());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  fmt::print(stderr, "dht: stopping on signal {}\n", signal);
  return 0;
}

}  // namespace bouquet::net

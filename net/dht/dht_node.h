// `bouquet dht`: a bare DHT node that servers and clients bootstrap through. It stores and
// serves Bouquet records like any node (with the same record lifetime) but announces nothing.
#pragma once

#include <string>
#include <vector>

namespace bouquet::net {

struct DhtNodeConfig {
  std::string listen = "0.0.0.0:4222";     // UDP HOST:PORT; port 0 picks a free one
  std::vector<std::string> initial_peers;  // other nodes to join through (optional)
  double record_lifetime_s = 120;          // must match the servers' (see DhtDirectoryConfig)
};

// Prints "dht: listening on HOST:PORT" to stdout, then runs until SIGINT or SIGTERM; returns the
// exit status.
int run_dht_node(const DhtNodeConfig& config);

}  // namespace bouquet::net

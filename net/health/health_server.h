// `bouquet health`: watches a swarm through the DHT and serves what it sees as a live web page
// (GET /) and as JSON (GET /api/v1/state, health_state.h).
//
// Promises:
// - One monitor thread reads the directory every refresh_s and times a TCP connect to each
//   server it lists (its RTT); page requests never wait on the DHT, they read the last snapshot.
// - A server that stops announcing leaves the state when its records expire, so its blocks show
//   the gap; one that joins appears at its first announcement.
// - Binds to loopback unless told otherwise; serves until SIGINT/SIGTERM.
#pragma once

#include <string>
#include <vector>

namespace bouquet::net::health {

struct HealthConfig {
  std::vector<std::string> initial_peers;  // HOST:PORT of DHT nodes (required)
  std::string listen = "127.0.0.1:8080";   // HTTP HOST:PORT (port 0: any free port)
  std::string model;                       // only this model ("" = every announced one)
  double refresh_s = 2;
  std::string dht_listen = "0.0.0.0:0";
};

// The command: prints "health: listening on http://HOST:PORT"; exit status.
int run_health(const HealthConfig& config);

}  // namespace bouquet::net::health

// The discovery and load-balancing driver of `bouquet serve`: runs one
// core::BalancerNode on the server's io_context and carries out its effects. Announce goes to the
// DHT (DhtDirectory::announce), DirectoryLookup to DhtDirectory::lookup with the answer posted
// back into the loop, MoveToSpan to the server (which loads the blocks and calls span_loaded).
// Every decision (when to join, which span, whether to move) is the core's; this file only wires.
//
// Promises: a directory problem (a failed put, an unreachable DHT) is one log line and never an
// exception out of the loop; a lookup not answered within lookup_timeout_s is answered empty; answers and timers that
// arrive after stop() or destruction do nothing; MoveToSpan reaches the server through asio::post, never from inside
// the core's handle.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/balancer_node.h"
#include "core/block_span.h"
#include "net/rpc/timers.h"

namespace bouquet::net {

class DhtDirectory;

class PeerIdentity;

struct ServerDiscoveryConfig {
  std::vector<std::string> initial_peers;        // DHT nodes to join through
  std::string dht_listen;                        // UDP HOST:PORT of this server's own DHT node
  std::string fingerprint;                       // announced with every record
  std::shared_ptr<const PeerIdentity> identity;  // signs every record; balancer.peer is its peer id
  core::BalancerNodeConfig balancer;             // peer, address, model name, spans, periods, speeds
  // A lookup unanswered this long (no DHT node reachable yet) is answered empty, so a first server
  // still joins (at the front) and balancing goes on instead of waiting forever.
  double lookup_timeout_s = 10;
};

class ServerDiscovery {
 public:
  using MoveToSpan = std::function<void(core::BlockSpan)>;

  // Starts the DHT node (throws std::invalid_argument / std::runtime_error naming a bad address).
  ServerDiscovery(asio::io_context& io, const DriverClock& clock, ServerDiscoveryConfig config,
                  MoveToSpan move_to_span);
  ~ServerDiscovery();
  ServerDiscovery(const ServerDiscovery&) = delete;
  ServerDiscovery& operator=(const ServerDiscovery&) = delete;

  std::string dht_address() const;
  // Asks for the free cache before every announcement.
  void set_cache_probe(std::function<uint64_t()> probe) { cache_probe_ = std::move(probe); }
  // Asks for the server's load (sessions, step time) before every announcement.
  void set_load_probe(std::function<core::ServerLoad()> probe) { load_probe_ = std::move(probe); }

  void start();
  // The server now serves `span` (the answer to a MoveToSpan).
  void span_loaded(core::BlockSpan span);
  // A clean shutdown: announces offline. The puts leave on OpenDHT's thread: wait while
  // announcing() before the node goes away.
  void stop();
  bool announcing() const;

  const core::BalancerNode& node() const { return node_; }

 private:
  void feed(const core::Input& input);
  void carry_out(std::vector<core::Effect>& effects);

  asio::io_context& io_;
  const DriverClock& clock_;
  ServerDiscoveryConfig config_;
  MoveToSpan move_to_span_;
  core::BalancerNode node_;
  std::function<uint64_t()> cache_probe_;
  std::function<core::ServerLoad()> load_probe_;
  TimerTable timers_;
  asio::steady_timer lookup_watchdog_;
  std::unique_ptr<DhtDirectory> directory_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// MemAvailable (/proc/meminfo) in bytes, or 0 when it cannot be read.
uint64_t available_memory_bytes();

}  // namespace bouquet::net

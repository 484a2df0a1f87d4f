// The real directory on OpenDHT: a DHT node (DhtRunner) that joins through initial peers, carries
// out the core's Announce effects (one value per served block, under the model's block key) and
// answers its DirectoryLookup effects with DirectoryAnswer.
//
// Promises to readers: an answer holds only records that are of the looked-up model, decoded,
// of this fingerprint (when both sides know one), unexpired, found under a block their own span
// contains, and the newest announcement of their peer; everything else is skipped with one log
// line and never throws. Records' expires_at are on the driver's clock (`clock` in the config).
//
// Threads: OpenDHT runs its own thread. announce() and lookup() may be called from any thread;
// a lookup's sink runs exactly once, on OpenDHT's thread (or on the given Asio executor), so a
// driver posts the answer into its own loop before feeding it to the core.
#pragma once

#include <asio/any_io_executor.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/effect.h"
#include "core/input.h"
#include "net/dht/dht_record.h"
#include "net/rpc/address.h"

namespace dht {
class DhtRunner;
}

namespace bouquet::net {

struct DhtDirectoryConfig {
  std::string listen = "127.0.0.1:0";      // UDP HOST:PORT of this DHT node; port 0 picks one
  std::vector<std::string> initial_peers;  // HOST:PORT of nodes already in the swarm
  // Storage lifetime of a record value on every node (OpenDHT takes it from the value type, so
  // every node must use the same). An upper bound: readers go by each record's expires_at.
  double record_lifetime_s = 120;
  uint32_t model_blocks = 0;  // announced next to each record so readers can check coverage
  std::string fingerprint;    // announced; readers skip records of another non-empty one
  // Signs what announce() publishes (identity.h); the records' peer must be its peer id. A
  // directory that only reads needs none.
  std::shared_ptr<const PeerIdentity> identity;
  // The driver's clock for expires_at (seconds). Default: Unix time.
  std::function<double()> clock;
  // Where skipped records and other notes go, one line each. Default: stderr "dht: ...".
  std::function<void(const std::string&)> log;
};

// True for the skip lines of a healthy swarm: expired records and records superseded by their
// peer's newer announcement (every re-announcement leaves one until its storage lifetime ends).
// Servers and command-line tools keep these out of their logs; the rest always shows.
bool routine_dht_skip(const std::string& line);

// A model seen in the directory's model index.
struct DhtModelEntry {
  std::string model_id;
  uint32_t model_blocks = 0;
};

class DhtDirectory {
 public:
  using AnswerSink = std::function<void(core::DirectoryAnswer)>;

  // Starts the node and bootstraps from the initial peers (asynchronously). Throws
  // std::invalid_argument naming a bad listen or peer address, std::runtime_error if the node
  // cannot bind.
  explicit DhtDirectory(DhtDirectoryConfig config);
  ~DhtDirectory();  // leaves the DHT and joins OpenDHT's threads; no sink runs afterwards
  DhtDirectory(const DhtDirectory&) = delete;
  DhtDirectory& operator=(const DhtDirectory&) = delete;

  // The bound UDP address ("127.0.0.1:4222"): what other nodes give as an initial peer.
  std::string address() const;
  // True once the node knows at least one good peer; false after `timeout_s` without one.
  bool wait_connected(double timeout_s) const;

  // Publishes `announce.record` under every block of its span (and the model in the model index),
  // signed by the config's identity (std::logic_error without one). A record with
  // expires_at = kNever lives record_lifetime_s.
  void announce(const core::Announce& announce);
  // The same, signed by `signer` (the record's peer must be its peer id): one process announcing
  // for several servers, as tests do.
  void announce(const core::Announce& announce, const PeerIdentity& signer);
  // Reads the records of `lookup.blocks` of `lookup.model_id`; `sink` gets the answer once.
  void lookup(const core::DirectoryLookup& lookup, AnswerSink sink);
  void lookup(const core::DirectoryLookup& lookup, asio::any_io_executor executor, AnswerSink sink);
  // Blocking form for command-line tools and tests.
  core::DirectoryAnswer lookup_now(const core::DirectoryLookup& lookup);
  // The models announced recently (unexpired entries of the model index), sorted by name.
  std::vector<DhtModelEntry> models_now();

  uint64_t skipped_records() const { return skipped_.load(); }
  // Announcements whose puts OpenDHT has not finished (stored or given up): a server going
  // offline waits for its goodbye to leave before its node goes away.
  int puts_in_flight() const { return puts_in_flight_->load(); }

 private:
  double now() const;
  double unix_now() const;
  void skip(const std::string& why);

  DhtDirectoryConfig config_;
  VerifiedRecords verified_;  // each record's signature is verified once, not per lookup
  std::unique_ptr<dht::DhtRunner> runner_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> skipped_{0};
  // Shared with the put callbacks, which OpenDHT may run after this object is gone.
  std::shared_ptr<std::atomic<int>> puts_in_flight_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace bouquet::net

// The event loop of one simulated node: one SimGrid actor per host that waits for whatever comes
// first among a message on its mailbox, one of its running activities (a computation, a PCIe
// read) and its earliest timer, and hands it to the node. Drivers build on it: they feed the core
// the inputs and carry out its effects; the loop owns time, mailbox and activities.
//
// Timers are keyed by (component, timer id) so several core components can share one node.
// Ties are broken by the order things were scheduled, so a run is deterministic.
#pragma once

#include "core/messages.h"
#include "core/peer_id.h"
#include "core/time.h"
#include "sim/transport.h"

// The full header, not forward.h: in 3.32 forward.h declares an ActivityPtr release function
// that the library does not define.
#include <simgrid/s4u/Activity.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace bouquet::sim {

class NodeLoop {
 public:
  NodeLoop(Transport& transport, std::string host);
  virtual ~NodeLoop() = default;
  NodeLoop(const NodeLoop&) = delete;
  NodeLoop& operator=(const NodeLoop&) = delete;

  // The actor's body: runs until finished() says so.
  void run();

  // Called once the simulation stopped, possibly in the middle of this node's work: account for
  // what was measured up to now.
  virtual void close_books() {}

  core::PeerId self() const { return self_; }
  const std::string& host() const { return host_; }
  static core::Time now();

 protected:
  virtual void on_start() {}
  virtual void on_message(core::PeerId from, core::Message& message) = 0;
  // `from` reset its connection with this node (Transport::send_reset).
  virtual void on_reset(core::PeerId from) {}
  virtual void on_timer(uint32_t component, uint64_t timer) = 0;
  virtual bool finished() const = 0;

  void set_timer(uint32_t component, uint64_t timer, core::Time at);
  void cancel_timer(uint32_t component, uint64_t timer);
  // Runs `fn` at time `at` (driver bookkeeping such as a directory answer arriving).
  void at(core::Time when, std::function<void()> fn);
  // Runs `on_done` once the already-started `activity` completes.
  void when_done(simgrid::s4u::ActivityPtr activity, std::function<void()> on_done);
  // Starts a computation of `seconds` on this node's host.
  void compute(double seconds, std::function<void()> on_done);

  Transport& transport_;

 private:
  struct Deadline {
    core::Time at;
    uint64_t seq;
    bool is_timer;
    std::pair<uint32_t, uint64_t> timer;
    std::function<void()> fn;
  };
  void fire_due();
  static bool later(const Deadline& a, const Deadline& b);
  bool is_stale(const Deadline& d) const;
  void push_deadline(Deadline deadline);
  void pop_stale();  // drops stale deadlines from the top of the heap

  std::string host_;
  core::PeerId self_;
  uint64_t seq_ = 0;
  std::map<std::pair<uint32_t, uint64_t>, uint64_t> armed_;  // timer -> seq of its deadline
  std::vector<Deadline> deadlines_;                          // a min-heap on (at, seq), by later()
  size_t stale_ = 0;  // about how many of them belong to cancelled or moved timers
  std::vector<simgrid::s4u::ActivityPtr> activities_;
  std::vector<std::function<void()>> on_done_;
  std::vector<simgrid::s4u::ActivityPtr> waiting_;  // what run() waits on, rebuilt each turn
};

}  // namespace bouquet::sim

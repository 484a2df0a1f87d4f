// Messages between simulated nodes. A message travels as a pointer to an Envelope over a SimGrid
// mailbox (one per node, named after its host) and is charged exactly the core's wire_bytes():
// the bytes a real connection carries (frame header and body), compression included. Activations are handles without
// data.
#pragma once

#include "core/messages.h"
#include "core/peer_id.h"

#include <cstdint>
#include <map>
#include <string>

namespace simgrid::s4u {
class Host;
}  // namespace simgrid::s4u

namespace bouquet::sim {

struct Envelope {
  core::PeerId from;
  core::Message message;
  bool reset = false;  // no message: the sender's end of the connection was reset
};

// Peer ids of the simulation's nodes and the traffic they exchange.
class Transport {
 public:
  // A stable id from the host name (FNV-1a), so ids do not depend on creation order.
  static core::PeerId peer_of(const std::string& host);

  void add_node(const std::string& host);
  const std::string& host_of(core::PeerId peer) const;

  // Sends without blocking the caller; the receiver's loop takes it from its mailbox. A message
  // to a host that is off is lost (its sender finds out by timeout).
  void send(core::PeerId from, core::PeerId to, core::Message message);
  // Tells `to` that `from` reset their connection (a restarted process): `to` sees the peer as
  // unreachable. Charged as a small TCP segment.
  void send_reset(core::PeerId from, core::PeerId to);

  uint64_t messages_sent() const { return messages_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Node {
    std::string host;
    // Found on the first message to it: SimGrid's look-up by name costs a string hash per message.
    simgrid::s4u::Host* sg_host = nullptr;
  };
  Node& node_of(core::PeerId peer);
  void post(Node& to, Envelope* envelope, uint64_t size);

  std::map<core::PeerId, Node> hosts_;
  uint64_t messages_sent_ = 0;
  uint64_t bytes_sent_ = 0;
};

}  // namespace bouquet::sim

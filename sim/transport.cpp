#include "sim/transport.h"

#include "core/check.h"
#include "core/wire.h"

#include <simgrid/s4u/Comm.hpp>
#include <simgrid/s4u/Host.hpp>
#include <simgrid/s4u/Mailbox.hpp>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

core::PeerId Transport::peer_of(const std::string& host) { return core::peer_id_of(host); }

void Transport::add_node(const std::string& host) {
  auto [it, inserted] = hosts_.emplace(peer_of(host), Node{host});
  BOUQUET_CHECK(inserted, "two hosts with one peer id");
}

const std::string& Transport::host_of(core::PeerId peer) const {
  auto it = hosts_.find(peer);
  BOUQUET_CHECK(it != hosts_.end(), "message to a peer that is not in the simulation");
  return it->second.host;
}

Transport::Node& Transport::node_of(core::PeerId peer) {
  auto it = hosts_.find(peer);
  BOUQUET_CHECK(it != hosts_.end(), "message to a peer that is not in the simulation");
  Node& node = it->second;
  if (node.sg_host == nullptr) node.sg_host = sg4::Host::by_name(node.host);
  return node;
}

namespace {

constexpr uint64_t kResetBytes = 64;  // a TCP RST with its headers

}  // namespace

void Transport::post(Node& to, Envelope* envelope, uint64_t size) {
  // A detached send to a host that is off can abort SimGrid: such a message is simply lost.
  if (!to.sg_host->is_on()) {
    delete envelope;
    return;
  }
  // The mailbox is looked up on every send, not kept: Mailbox::by_name is a simcall, a point
  // where SimGrid may run other actors first, and dropping it reorders same-time events (every
  // scenario's expected output changes).
  sg4::Mailbox::by_name(to.host)->put_init(envelope, size)->detach([](void* payload) {
    delete static_cast<Envelope*>(payload);
  });
}

void Transport::send(core::PeerId from, core::PeerId to, core::Message message) {
  Node& node = node_of(to);
  const uint64_t size = core::wire_bytes(message);
  ++messages_sent_;
  bytes_sent_ += size;
  post(node, new Envelope{from, std::move(message)}, size);
}

void Transport::send_reset(core::PeerId from, core::PeerId to) {
  ++messages_sent_;
  bytes_sent_ += kResetBytes;
  post(node_of(to), new Envelope{from, core::CloseSession{}, true}, kResetBytes);
}

}  // namespace bouquet::sim

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
  auto [it, inserted] = hosts_.emplace(peer_of(host), host);
  BOUQUET_CHECK(inserted, "two hosts with one peer id");
}

const std::string& Transport::host_of(core::PeerId peer) const {
  auto it = hosts_.find(peer);
  BOUQUET_CHECK(it != hosts_.end(), "message to a peer that is not in the simulation");
  return it->second;
}

namespace {

constexpr uint64_t kResetBytes = 64;  // a TCP RST with its headers

void post(const std::string& host, Envelope* envelope, uint64_t size) {
  // A detached send to a host that is off can abort SimGrid: such a message is simply lost.
  if (!sg4::Host::by_name(host)->is_on()) {
    delete envelope;
    return;
  }
  sg4::Mailbox::by_name(host)->put_init(envelope, size)->detach([](void* payload) {
    delete static_cast<Envelope*>(payload);
  });
}

}  // namespace

void Transport::send(core::PeerId from, core::PeerId to, core::Message message) {
  const std::string& host = host_of(to);
  const uint64_t size = core::wire_bytes(message);
  ++messages_sent_;
  bytes_sent_ += size;
  post(host, new Envelope{from, std::move(message)}, size);
}

void Transport::send_reset(core::PeerId from, core::PeerId to) {
  ++messages_sent_;
  bytes_sent_ += kResetBytes;
  post(host_of(to), new Envelope{from, core::CloseSession{}, true}, kResetBytes);
}

}  // namespace bouquet::sim

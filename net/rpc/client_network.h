// A client's connections to the servers it talks to: one framed connection per peer, made on
// first use, with a bounded connect time. Shared by everything a client runs (discovery,
// inference sessions, forward/backward calls); it carries messages and reports losses, and
// decides nothing.
//
// Promises: send() to a peer without a connection resolves and connects (at most
// connect_timeout_s), queueing messages meanwhile and writing them in order once connected;
// a failed connect, a reset, a close or an undecodable reply is reported once per connection as
// on_lost(peer, reason), with the address and the cause in the reason; a later send() connects
// again. Messages arrive through on_message on the io_context's thread.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/messages.h"
#include "core/peer_id.h"
#include "net/rpc/address.h"
#include "net/rpc/connection.h"

namespace bouquet::net {

struct ClientNetworkConfig {
  double connect_timeout_s = 10;
  double frame_timeout_s = 30;
  FrameLimits limits;
};

class ClientNetwork {
 public:
  using MessageHandler = std::function<void(core::PeerId, core::Message)>;
  using LostHandler = std::function<void(core::PeerId, const std::string& reason)>;

  ClientNetwork(asio::io_context& io, ClientNetworkConfig config, MessageHandler on_message, LostHandler on_lost);
  ~ClientNetwork();
  ClientNetwork(const ClientNetwork&) = delete;
  ClientNetwork& operator=(const ClientNetwork&) = delete;

  // Peers are numbered in the order they are added, from 1: the same list gives the same ids.
  core::PeerId add_peer(const HostPort& address);
  const HostPort& address(core::PeerId peer) const;
  void send(core::PeerId peer, const core::Message& message);
  void close_all();

 private:
  struct Peer;
  void connect(core::PeerId id);
  void lost(core::PeerId id, uint64_t attempt, const std::string& reason);

  asio::io_context& io_;
  ClientNetworkConfig config_;
  MessageHandler on_message_;
  LostHandler on_lost_;
  std::map<core::PeerId, std::unique_ptr<Peer>> peers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bouquet::net

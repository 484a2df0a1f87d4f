// The connections of `bouquet serve`: the listening socket, the accept loop and the open
// connections, each one peer of the core. It knows nothing of the protocol beyond frames: every
// message and every lost connection goes to the server's handlers, which feed the core.
//
// Promises: a connection beyond max_connections is answered `overloaded` and closed, never a peer;
// accept errors (the fd limit) back off, up to 1 s between tries, instead of spinning at full CPU;
// with idle_timeout_s > 0 a connection with no bytes for that long is closed (told why) unless
// `holds_work` says the core still has something of that peer's (a session, an open, a compute).
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/messages.h"
#include "core/peer_id.h"
#include "net/rpc/connection.h"

namespace bouquet::net {

struct ServerConnectionsConfig {
  std::string listen;  // HOST:PORT (port 0: any free port)
  uint32_t max_connections = 256;
  double idle_timeout_s = 60;  // 0 = never
  double frame_timeout_s = 30;
  uint64_t max_frame_bytes = 0;
};

class ServerConnections {
 public:
  using MessageHandler = std::function<void(core::PeerId, core::Message)>;
  using GoneHandler = std::function<void(core::PeerId, std::string reason)>;
  using HoldsWork = std::function<bool(core::PeerId)>;

  // Binds and listens at once (throws "--listen ...: why" when it cannot); accepts from start().
  ServerConnections(asio::io_context& io, ServerConnectionsConfig config);

  void start(MessageHandler on_message, GoneHandler on_gone, HoldsWork holds_work);
  // Sends to a peer still connected; nothing for one gone (its PeerUnreachable was or will be fed).
  void send(core::PeerId peer, const core::Message& message);
  bool connected(core::PeerId peer) const { return peers_.count(peer) != 0; }
  std::string local_address() const;

 private:
  void accept();
  void accept_failed(const asio::error_code& ec);
  void on_accepted(asio::ip::tcp::socket socket);
  void sweep_idle();

  asio::io_context& io_;
  ServerConnectionsConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  MessageHandler on_message_;
  GoneHandler on_gone_;
  HoldsWork holds_work_;
  bool started_ = false;
  std::map<core::PeerId, std::shared_ptr<Connection>> peers_;
  uint64_t next_peer_ = 1;
  uint64_t refused_ = 0;
  std::optional<asio::steady_timer> accept_timer_;  // backoff after an accept error
  double accept_backoff_s_ = 0;                     // 0 = not backing off
  std::optional<asio::steady_timer> idle_timer_;
};

}  // namespace bouquet::net

#include "net/rpc/client_network.h"

#include <fmt/core.h>

#include "core/check.h"

namespace bouquet::net {

using core::PeerId;

struct ClientNetwork::Peer {
  HostPort address;
  uint64_t attempt = 0;  // which connection the callbacks in flight belong to
  bool connecting = false;
  std::shared_ptr<Connection> connection;
  std::deque<core::Message> pending;
  std::shared_ptr<asio::ip::tcp::resolver> resolver;
  std::shared_ptr<asio::ip::tcp::socket> socket;
  std::shared_ptr<asio::steady_timer> timer;
};

ClientNetwork::ClientNetwork(asio::io_context& io, ClientNetworkConfig config, MessageHandler on_message,
                             LostHandler on_lost)
    : io_(io), config_(config), on_message_(std::move(on_message)), on_lost_(std::move(on_lost)) {}

ClientNetwork::~ClientNetwork() { close_all(); }

PeerId ClientNetwork::add_peer(const HostPort& address) {
  const PeerId id{peers_.size() + 1};
  auto peer = std::make_unique<Peer>();
  peer->address = address;
  peers_.emplace(id, std::move(peer));
  return id;
}

const HostPort& ClientNetwork::address(PeerId peer) const {
  auto it = peers_.find(peer);
  BOUQUET_CHECK(it != peers_.end(), "address of a peer this client never added");
  return it->second->address;
}

void ClientNetwork::send(PeerId id, const core::Message& message) {
  auto it = peers_.find(id);
  BOUQUET_CHECK(it != peers_.end(), "send to a peer this client never added");
  Peer& peer = *it->second;
  if (peer.connection) {
    // A connection that closed has its loss report on the way (on_lost): what is sent meanwhile
    // is lost with it, and the next send after the report connects again.
    if (peer.connection->is_open()) peer.connection->send(message);
    return;
  }
  peer.pending.push_back(message);
  if (!peer.connecting) connect(id);
}

void ClientNetwork::connect(PeerId id) {
  Peer& peer = *peers_.at(id);
  peer.connecting = true;
  peer.connection.reset();
  const uint64_t attempt = ++peer.attempt;
  peer.resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
  peer.socket = std::make_shared<asio::ip::tcp::socket>(io_);
  peer.timer = std::make_shared<asio::steady_timer>(io_);
  auto alive = std::weak_ptr<bool>(alive_);
  const std::string where = peer.address.to_string();

  peer.timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config_.connect_timeout_s)));
  peer.timer->async_wait(
      [this, alive, id, attempt, where, resolver = peer.resolver, socket = peer.socket](const asio::error_code& ec) {
        if (ec || alive.expired()) return;
        resolver->cancel();
        asio::error_code ignored;
        socket->close(ignored);
        lost(id, attempt, fmt::format("cannot connect to {} within {} s", where, config_.connect_timeout_s));
      });

  peer.resolver->async_resolve(
      peer.address.host, std::to_string(peer.address.port),
      [this, alive, id, attempt, where, socket = peer.socket](const asio::error_code& ec,
                                                              asio::ip::tcp::resolver::results_type results) {
        if (alive.expired()) return;
        if (ec) return lost(id, attempt, fmt::format("cannot resolve {}: {}", where, ec.message()));
        asio::async_connect(
            *socket, results,
            [this, alive, id, attempt, where, socket](const asio::error_code& ec2, const asio::ip::tcp::endpoint&) {
              if (alive.expired()) return;
              if (ec2) return lost(id, attempt, fmt::format("cannot connect to {}: {}", where, ec2.message()));
              auto it = peers_.find(id);
              if (it == peers_.end() || it->second->attempt != attempt) return;
              Peer& p = *it->second;
              p.timer->cancel();
              p.connecting = false;
              ConnectionConfig connection_config;
              connection_config.limits = config_.limits;
              connection_config.frame_timeout_s = config_.frame_timeout_s;
              connection_config.bad_body = ConnectionConfig::BadBody::close;
              p.connection = std::make_shared<Connection>(std::move(*socket), connection_config);
              p.connection->start(
                  [this, alive, id](core::Message message) {
                    if (!alive.expired()) on_message_(id, std::move(message));
                  },
                  [this, alive, id, attempt, where](const std::string& reason) {
                    if (!alive.expired()) lost(id, attempt, fmt::format("{}: {}", where, reason));
                  });
              while (!p.pending.empty()) {
                p.connection->send(p.pending.front());
                p.pending.pop_front();
              }
            });
      });
}

void ClientNetwork::lost(PeerId id, uint64_t attempt, const std::string& reason) {
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second->attempt != attempt) return;
  Peer& peer = *it->second;
  ++peer.attempt;  // later callbacks of this attempt are stale
  peer.connecting = false;
  if (peer.timer) peer.timer->cancel();
  if (peer.connection) peer.connection->close(reason);
  peer.connection.reset();
  peer.pending.clear();
  on_lost_(id, reason);
}

void ClientNetwork::close_all() {
  for (auto& [id, peer] : peers_) {
    ++peer->attempt;
    peer->connecting = false;
    if (peer->timer) peer->timer->cancel();
    if (peer->resolver) peer->resolver->cancel();
    if (peer->socket) {
      asio::error_code ignored;
      peer->socket->close(ignored);
    }
    if (peer->connection) peer->connection->close("client closed");
    peer->connection.reset();
    peer->pending.clear();
  }
}

}  // namespace bouquet::net

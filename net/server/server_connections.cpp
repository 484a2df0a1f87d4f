#include "net/server/server_connections.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "net/rpc/address.h"

namespace bouquet::net {
namespace {

void log_line(const std::string& line) {
  fmt::print(stderr, "bouquet serve: {}\n", line);
  std::fflush(stderr);
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

ServerConnections::ServerConnections(asio::io_context& io, ServerConnectionsConfig config)
    : io_(io), config_(std::move(config)), acceptor_(io) {
  const HostPort listen = parse_host_port(config_.listen, /*allow_port_zero=*/true);
  try {
    asio::ip::tcp::resolver resolver(io_);
    const auto endpoints = resolver.resolve(listen.host, std::to_string(listen.port));
    const asio::ip::tcp::endpoint endpoint = *endpoints.begin();
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
  } catch (const std::system_error& e) {
    throw std::runtime_error(fmt::format("--listen {}: {}", config_.listen, e.what()));
  }
}

std::string ServerConnections::local_address() const { return to_string(acceptor_.local_endpoint()); }

void ServerConnections::start(MessageHandler on_message, GoneHandler on_gone, HoldsWork holds_work) {
  if (started_) return;
  started_ = true;
  on_message_ = std::move(on_message);
  on_gone_ = std::move(on_gone);
  holds_work_ = std::move(holds_work);
  accept();
  sweep_idle();
}

void ServerConnections::send(core::PeerId peer, const core::Message& message) {
  if (auto it = peers_.find(peer); it != peers_.end()) it->second->send(message);
}

void ServerConnections::accept() {
  acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) return accept_failed(ec);
    accept_backoff_s_ = 0;
    on_accepted(std::move(socket));
    accept();
  });
}

void ServerConnections::accept_failed(const asio::error_code& ec) {
  // At the fd limit (EMFILE) the pending connection stays in the backlog and the listening socket
  // stays readable: accepting again at once would spin at full CPU until an fd frees.
  if (accept_backoff_s_ == 0) {
    log_line(
        fmt::format("accept failed: {} ({} connections open); retrying with backoff", ec.message(), peers_.size()));
  }
  accept_backoff_s_ = std::min(1.0, accept_backoff_s_ == 0 ? 0.01 : 2 * accept_backoff_s_);
  if (!accept_timer_) accept_timer_.emplace(io_);
  accept_timer_->expires_after(seconds(accept_backoff_s_));
  accept_timer_->async_wait([this](const asio::error_code& wait_ec) {
    if (!wait_ec) accept();
  });
}

void ServerConnections::on_accepted(asio::ip::tcp::socket socket) {
  ConnectionConfig connection_config;
  connection_config.limits.max_frame_bytes = config_.max_frame_bytes;
  connection_config.frame_timeout_s = config_.frame_timeout_s;
  connection_config.bad_body = ConnectionConfig::BadBody::reply;
  auto connection = std::make_shared<Connection>(std::move(socket), connection_config);
  if (peers_.size() >= config_.max_connections) {
    // Told why, then closed once the reply is written; it never becomes a peer of the core.
    if (refused_++ % 1000 == 0) {
      log_line(fmt::format("{} connection(s) refused at --max-connections {}", refused_, config_.max_connections));
    }
    connection->fail(core::Error{core::ErrorCode::overloaded,
                                 fmt::format("this server has its maximum of {} connections open; try again "
                                             "later or another server",
                                             config_.max_connections)});
    return;
  }
  const core::PeerId peer{next_peer_++};
  peers_.emplace(peer, connection);
  connection->start([this, peer](core::Message message) { on_message_(peer, std::move(message)); },
                    [this, peer, remote = connection->remote()](const std::string& reason) {
                      peers_.erase(peer);
                      on_gone_(peer, fmt::format("{}: {}", remote, reason));
                    });
}

void ServerConnections::sweep_idle() {
  if (config_.idle_timeout_s <= 0) return;
  if (!idle_timer_) idle_timer_.emplace(io_);
  idle_timer_->expires_after(seconds(std::clamp(config_.idle_timeout_s / 4, 0.05, 1.0)));
  idle_timer_->async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    const auto cutoff = std::chrono::steady_clock::now() - seconds(config_.idle_timeout_s);
    for (auto& [peer, connection] : peers_) {
      // fail() reports the close later, from the event loop: `peers_` is not changed under us.
      if (connection->last_activity() >= cutoff || holds_work_(peer)) continue;
      connection->fail(core::Error{core::ErrorCode::timeout,
                                   fmt::format("no request for {} s and no session here: closing the connection "
                                               "(--idle-timeout)",
                                               config_.idle_timeout_s)});
    }
    sweep_idle();
  });
}

}  // namespace bouquet::net

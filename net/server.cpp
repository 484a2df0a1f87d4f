#include "net/server.h"

#include <ATen/Parallel.h>
#include <asio.hpp>
#include <fmt/core.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <optional>

#include "core/block_server.h"
#include "gpu/model_config.h"
#include "net/address.h"
#include "net/connection.h"
#include "net/fingerprint.h"
#include "net/span_compute.h"
#include "net/timers.h"
#include "net/worker.h"

namespace bouquet::net {

using core::Effect;
using core::PeerId;

struct Server::Impl {
  explicit Impl(const ServeConfig& config);

  void accept();
  void on_accepted(asio::ip::tcp::socket socket);
  void feed(const core::Input& input);
  void carry_out(std::vector<Effect>& effects);
  void start_compute(core::ComputeRequest request);

  ServeConfig config;
  std::string model_id;
  asio::io_context io;
  DriverClock clock;
  TimerTable timers;
  std::unique_ptr<SpanCompute> compute;
  std::optional<core::BlockServer> block_server;
  asio::ip::tcp::acceptor acceptor;
  std::optional<asio::signal_set> signals;
  std::map<PeerId, std::shared_ptr<Connection>> peers;
  uint64_t next_peer = 1;
  uint64_t steps_received = 0;  // for --crash-after-steps
  // Declared last: destroyed (joined) first, while everything its jobs touch still exists.
  std::unique_ptr<WorkerThread> worker;
};

Server::Impl::Impl(const ServeConfig& c)
    : config(c),
      timers(io, clock, [this](core::TimerId id) { feed(core::TimerFired{id}); }),
      acceptor(io) {
  if (config.threads < 0) throw std::invalid_argument("--threads must be >= 0");
  if (config.threads > 0) at::set_num_threads(config.threads);
  const core::BlockSpan span = parse_block_span(config.blocks);
  const HostPort listen = parse_host_port(config.listen, /*allow_port_zero=*/true);
  if (!config.announce_addr.empty()) parse_host_port(config.announce_addr);
  model_id = model_fingerprint(config.model);
  // Refuse a span past the model's end with a clear line before loading anything.
  const gpu::ModelConfig model = gpu::load_model_config(config.model);
  if (span.end > model.num_layers) {
    throw std::invalid_argument(fmt::format("--blocks {}: the model has {} blocks (0:{} at most)",
                                            config.blocks, model.num_layers, model.num_layers));
  }
  compute = std::make_unique<SpanCompute>(SpanComputeConfig{config.model, span, config.dtype, config.device, config.quant});

  core::BlockServerConfig server;
  server.model_id = model_id;
  server.span = span;
  server.hidden_size = compute->hidden_size();
  server.cache_tokens = config.cache_tokens;
  server.session_idle_timeout_s = config.session_idle_timeout_s;
  block_server.emplace(std::move(server));

  try {
    asio::ip::tcp::resolver resolver(io);
    const auto endpoints = resolver.resolve(listen.host, std::to_string(listen.port));
    const asio::ip::tcp::endpoint endpoint = *endpoints.begin();
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen();
  } catch (const std::system_error& e) {
    throw std::runtime_error(fmt::format("--listen {}: {}", config.listen, e.what()));
  }
  worker = std::make_unique<WorkerThread>();
}

void Server::Impl::accept() {
  acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) on_accepted(std::move(socket));
    accept();
  });
}

void Server::Impl::on_accepted(asio::ip::tcp::socket socket) {
  const PeerId peer{next_peer++};
  ConnectionConfig connection_config;
  connection_config.limits.max_frame_bytes = config.max_frame_bytes;
  connection_config.frame_timeout_s = config.frame_timeout_s;
  connection_config.bad_body = ConnectionConfig::BadBody::reply;
  auto connection = std::make_shared<Connection>(std::move(socket), connection_config);
  peers.emplace(peer, connection);
  connection->start(
      [this, peer](core::Message message) { feed(core::MessageReceived{peer, std::move(message)}); },
      [this, peer, remote = connection->remote()](const std::string& reason) {
        peers.erase(peer);
        feed(core::PeerUnreachable{peer, fmt::format("{}: {}", remote, reason)});
      });
}

void Server::Impl::feed(const core::Input& input) {
  if (config.crash_after_steps > 0) {
    const auto* received = std::get_if<core::MessageReceived>(&input);
    if (received && std::holds_alternative<core::StepRequest>(received->message) &&
        ++steps_received > config.crash_after_steps) {
      fmt::print(stderr, "bouquet serve: --crash-after-steps {}: dying like SIGKILL\n", config.crash_after_steps);
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
  }
  std::vector<Effect> effects;
  block_server->handle(clock.now(), input, effects);
  carry_out(effects);
}

void Server::Impl::carry_out(std::vector<Effect>& effects) {
  for (Effect& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      // A peer already gone gets nothing; its PeerUnreachable has been or will be fed.
      if (auto it = peers.find(send->to); it != peers.end()) it->second->send(send->message);
    } else if (auto* set = std::get_if<core::SetTimer>(&effect)) {
      timers.set(set->timer, set->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      timers.cancel(cancel->timer);
    } else if (auto* start = std::get_if<core::StartCompute>(&effect)) {
      start_compute(std::move(start->request));
    } else if (auto* drop = std::get_if<core::DropCache>(&effect)) {
      worker->post([this, cache = drop->cache_id] { compute->drop_cache(cache); });
    }
    // Announce / DirectoryLookup: no directory in this server yet (issue 6).
  }
}

void Server::Impl::start_compute(core::ComputeRequest request) {
  worker->post([this, request = std::move(request)] {
    core::ComputeFinished done{request.task_id, compute->run(request)};
    asio::post(io, [this, done = std::move(done)] { feed(done); });
  });
}

Server::Server(const ServeConfig& config) : impl_(std::make_unique<Impl>(config)) {}

Server::~Server() {
  // Stop the worker before the io_context and the compute it posts to go away.
  if (impl_) impl_->worker.reset();
}

std::string Server::listen_address() const { return to_string(impl_->acceptor.local_endpoint()); }

std::string Server::announce_address() const {
  return impl_->config.announce_addr.empty() ? listen_address() : impl_->config.announce_addr;
}

const std::string& Server::model_id() const { return impl_->model_id; }

core::BlockSpan Server::span() const { return impl_->compute->span(); }

std::string Server::describe() const {
  return fmt::format("blocks {} of {} (fingerprint {}), {}, {:.1f} MB of weights, {} cache tokens per block",
                     span().to_string(), impl_->config.model, impl_->model_id,
                     impl_->compute->describe_compute(), impl_->compute->weight_bytes() / 1e6,
                     impl_->config.cache_tokens);
}

void Server::run(bool handle_signals) {
  if (handle_signals) {
    impl_->signals.emplace(impl_->io, SIGINT, SIGTERM);
    impl_->signals->async_wait([this](const asio::error_code& ec, int) {
      if (!ec) stop();
    });
  }
  impl_->accept();
  impl_->io.run();
}

void Server::stop() { impl_->io.stop(); }

int serve(const ServeConfig& config) {
  Server server(config);
  fmt::print(stderr, "bouquet serve: {}\n", server.describe());
  if (server.announce_address() != server.listen_address()) {
    fmt::print(stderr, "bouquet serve: announcing {}\n", server.announce_address());
  }
  fmt::print("listening on {}\n", server.listen_address());
  std::fflush(stdout);
  server.run(/*handle_signals=*/true);
  return 0;
}

}  // namespace bouquet::net

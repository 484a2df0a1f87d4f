#include "net/server/server.h"

#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <fmt/format.h>
#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "core/block_server.h"
#include "core/server_memory.h"
#include "core/throughput.h"
#include "gpu/fingerprint.h"
#include "gpu/kernels/matvec.h"
#include "gpu/model_config.h"
#include "gpu/span_compute.h"
#include "gpu/tensor_bridge.h"
#include "net/rpc/address.h"
#include "net/rpc/connection.h"
#include "net/rpc/timers.h"
#include "net/rpc/worker.h"
#include "net/server/server_discovery.h"
#include "net/server/throughput_measure.h"

namespace bouquet::net {

using core::Effect;
using core::PeerId;

struct Server::Impl {
  explicit Impl(const ServeConfig& config);

  void accept();
  void accept_failed(const asio::error_code& ec);
  void on_accepted(asio::ip::tcp::socket socket);
  // Every so often, closes connections idle past --idle-timeout that hold nothing in the core.
  void sweep_idle_connections();
  void feed(const core::Input& input);
  void carry_out(std::vector<Effect>& effects);
  void start_compute(core::ComputeRequest request);
  void start_batch(std::vector<core::ComputeRequest> requests);
  void lie_if_drilled(core::ComputeKind kind, core::ComputeFinished& done);
  std::atomic<uint64_t> batches_started{0};
  void refuse_before_span(const core::Input& input);
  SpanComputeConfig compute_config(core::BlockSpan span) const;
  void measure_speed(SpanCompute& probe);
  // --device cuda without --num-blocks: blocks and cache budget from the GPU's free memory.
  void size_from_gpu_memory(const SpanCompute& probe, uint64_t free_bytes);
  void start_discovery();
  void move_to_span(core::BlockSpan span);
  void install(uint64_t load, std::shared_ptr<SpanCompute> loaded);
  // The core's server for `serving`'s span, with this server's settings and measured speeds.
  core::BlockServerConfig block_server_config(const SpanCompute& serving) const;
  void shut_down();
  void wait_for_goodbye(std::chrono::steady_clock::time_point give_up_at);

  ServeConfig config;
  std::string model_id;
  gpu::ModelConfig model;
  asio::io_context io;
  DriverClock clock;
  TimerTable timers;
  // Shared with the compute jobs in flight, so a move can replace it while the worker runs one.
  std::shared_ptr<SpanCompute> compute;
  std::optional<core::BlockServer> block_server;
  uint64_t serving = 0;                         // bumped per installed span: results of an older one are dropped
  uint64_t loads = 0;                           // bumped per requested load: only the latest is installed
  std::optional<core::BlockSpan> loading_span;  // the span being loaded, for the refusals meanwhile
  bool accepting = false;
  double inference_rps = 0, forward_rps = 0, throughput_rps = 0;
  std::vector<std::string> adapter_names;  // the LoRA adapters loaded, announced as such
  asio::ip::tcp::acceptor acceptor;
  std::optional<asio::signal_set> signals;
  std::map<PeerId, std::shared_ptr<Connection>> peers;
  uint64_t next_peer = 1;
  uint64_t steps_received = 0;                     // for --crash-after-steps
  uint64_t outputs_computed = 0;                   // for --lie-after-steps
  std::optional<asio::steady_timer> accept_timer;  // backoff after an accept error
  double accept_backoff_s = 0;                     // 0 = not backing off
  std::optional<asio::steady_timer> idle_timer;
  uint64_t connections_refused = 0;
  std::unique_ptr<ServerDiscovery> discovery;
  std::optional<asio::steady_timer> shutdown_timer;
  // Declared last: destroyed (joined) first, while everything their jobs touch still exists.
  std::unique_ptr<WorkerThread> loader;  // loads the next span while the current one serves
  std::unique_ptr<WorkerThread> worker;
};

namespace {

void log_line(const std::string& line) {
  fmt::print(stderr, "bouquet serve: {}\n", line);
  std::fflush(stderr);
}

void check_connection_limits(const ServeConfig& config) {
  if (config.max_connections == 0) throw std::invalid_argument("--max-connections must be at least 1");
  if (!(config.idle_timeout_s >= 0) || !std::isfinite(config.idle_timeout_s)) {
    throw std::invalid_argument(
        fmt::format("--idle-timeout {}: must be finite seconds >= 0 (0 = never)", config.idle_timeout_s));
  }
  if (!(config.session_idle_contended_s >= 0) || !std::isfinite(config.session_idle_contended_s)) {
    throw std::invalid_argument(fmt::format("--session-idle-contended {}: must be finite seconds >= 0 (0 = off)",
                                            config.session_idle_contended_s));
  }
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

Server::Impl::Impl(const ServeConfig& c)
    : config(c), timers(io, clock, [this](core::TimerId id) { feed(core::TimerFired{id}); }), acceptor(io) {
  if (config.threads < 0) throw std::invalid_argument("--threads must be >= 0");
  check_connection_limits(config);
  if (config.threads > 0) at::set_num_threads(config.threads);
  const bool pinned = !config.blocks.empty();
  const bool discovering = !config.initial_peers.empty();
  if (!pinned && !discovering) {
    throw std::invalid_argument(
        "give --blocks A:B, or --initial-peers HOST:PORT,... to join a swarm and choose blocks");
  }
  if (pinned && config.num_blocks > 0) throw std::invalid_argument("give either --blocks or --num-blocks, not both");
  const std::optional<core::BlockSpan> span =
      pinned ? std::optional<core::BlockSpan>(parse_block_span(config.blocks)) : std::nullopt;
  const HostPort listen = parse_host_port(config.listen, /*allow_port_zero=*/true);
  if (!config.announce_addr.empty()) parse_host_port(config.announce_addr);
  // The address first: a port in use is one clear line before any weights are read.
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
  model_id = model_fingerprint(config.model);
  // Refuse a span past the model's end with a clear line before loading anything.
  model = gpu::load_model_config(config.model);
  if (span && span->end > model.num_layers) {
    throw std::invalid_argument(fmt::format("--blocks {}: the model has {} blocks (0:{} at most)", config.blocks,
                                            model.num_layers, model.num_layers));
  }
  if (config.num_blocks > model.num_layers) {
    throw std::invalid_argument(
        fmt::format("--num-blocks {}: the model has {} blocks", config.num_blocks, model.num_layers));
  }
  if (span) compute = std::make_shared<SpanCompute>(compute_config(*span));
  if (compute) adapter_names = compute->adapter_names();
  if (discovering) {
    if (!(config.update_period_s > 0)) throw std::invalid_argument("--update-period must be > 0 seconds");
    if (config.join_delay_s < 0 || config.balance_period_s <= 0) {
      throw std::invalid_argument("--join-delay must be >= 0 and --balance-period > 0 seconds");
    }
    if (config.balance_quality < 0 || config.balance_quality > 1) {
      throw std::invalid_argument("--balance-quality must be in [0, 1]");
    }
    if (config.network_bps < 0 || config.throughput < 0) {
      throw std::invalid_argument("--network-bps and --throughput must be >= 0");
    }
    // One block is enough to measure per-block speed and size; a pinned server has its span.
    std::unique_ptr<SpanCompute> probe;
    if (!compute) probe = std::make_unique<SpanCompute>(compute_config(core::BlockSpan{0, 1}));
    SpanCompute& measured = compute ? *compute : *probe;
    adapter_names = measured.adapter_names();  // a bad adapter fails here, before joining
    if (!pinned && config.num_blocks == 0) {
      if (const auto gpu_free = measured.device_free_bytes()) {
        size_from_gpu_memory(measured, *gpu_free);
      } else {
        // A CPU server keeps half the available memory for the OS, its clients and other processes.
        const core::ServerMemory memory{static_cast<double>(available_memory_bytes()), 0.5,
                                        static_cast<double>(measured.weight_bytes()), 2.0 * measured.hidden_size() * 4};
        config.num_blocks = memory.memory_bytes == 0 ? static_cast<uint32_t>(model.num_layers)
                                                     : core::blocks_that_fit(memory, config.cache_tokens,
                                                                             static_cast<uint32_t>(model.num_layers));
        log_line(
            fmt::format("--num-blocks {}: as many as fit {:.1f} GB (half the available memory) at {:.1f} MB "
                        "of weights and {:.1f} MB of cache per block",
                        config.num_blocks, memory.memory_bytes / 2e9, memory.block_weight_bytes / 1e6,
                        config.cache_tokens * memory.cache_bytes_per_token / 1e6));
      }
    }
    measure_speed(measured);
  }

  if (compute) {
    block_server.emplace(block_server_config(*compute));
    ++serving;
  }

  worker = std::make_unique<WorkerThread>();
  loader = std::make_unique<WorkerThread>();
  if (discovering) start_discovery();
}

void Server::Impl::size_from_gpu_memory(const SpanCompute& probe, uint64_t free_bytes) {
  // The probe's block is on the GPU already: its weights count as available. A tenth stays back
  // for activations and the allocator; the cache budget takes what the blocks leave.
  const core::ServerMemory memory{static_cast<double>(free_bytes + probe.weight_bytes()), 0.1,
                                  static_cast<double>(probe.weight_bytes() / probe.span().size()),
                                  static_cast<double>(probe.cache_bytes_per_token() / probe.span().size())};
  config.num_blocks = core::blocks_that_fit(memory, config.cache_tokens, static_cast<uint32_t>(model.num_layers));
  config.cache_tokens = std::max<uint64_t>(config.cache_tokens, core::cache_tokens_that_fit(memory, config.num_blocks));
  log_line(
      fmt::format("--num-blocks {}: as many as fit the GPU's {:.1f} GB free (a tenth kept back) at {:.1f} MB of "
                  "weights per block; {} cache tokens per block",
                  config.num_blocks, memory.memory_bytes / 1e9, memory.block_weight_bytes / 1e6, config.cache_tokens));
}

SpanComputeConfig Server::Impl::compute_config(core::BlockSpan span) const {
  // A server's log shows each load's progress (redrawn on a terminal, plain lines in a log).
  return SpanComputeConfig{config.model,          span,         config.dtype,
                           config.device,         config.quant, {config.adapters.begin(), config.adapters.end()},
                           /*show_progress=*/true};
}

void Server::Impl::measure_speed(SpanCompute& probe) {
  const MeasuredSpeed speed =
      cached_block_speed(ThroughputKey{model_id, config.device, config.dtype, config.quant, at::get_num_threads()},
                         probe, [](const std::string& line) { log_line(line); });
  inference_rps = speed.inference_rps;
  forward_rps = speed.forward_rps;
  const double network_bps = config.network_bps > 0 ? config.network_bps : 100e6;
  log_line(fmt::format("network {:.1f} Mbit/s ({})", network_bps / 1e6,
                       config.network_bps > 0 ? "--network-bps" : "default; set --network-bps"));
  const uint32_t blocks = config.blocks.empty() ? config.num_blocks : compute->span().size();
  if (config.throughput > 0) {
    throughput_rps = config.throughput;
    log_line(
        fmt::format("per block: {:.1f} inference steps/s, {:.0f} forward tokens/s ({}); throughput {:.1f} "
                    "tokens/s (--throughput)",
                    inference_rps, forward_rps, speed.source, throughput_rps));
  } else {
    throughput_rps =
        core::announced_throughput_rps(forward_rps, blocks, network_bps, static_cast<uint32_t>(model.hidden_size));
    log_line(
        fmt::format("per block: {:.1f} inference steps/s, {:.0f} forward tokens/s ({}); throughput {:.1f} "
                    "tokens/s for {} blocks (network allows {:.0f})",
                    inference_rps, forward_rps, speed.source, throughput_rps, blocks,
                    core::network_rps(network_bps, static_cast<uint32_t>(model.hidden_size))));
  }
}

void Server::Impl::start_discovery() {
  const std::string address =
      config.announce_addr.empty() ? to_string(acceptor.local_endpoint()) : config.announce_addr;
  const std::string name = config.model_name.empty()
                               ? std::filesystem::path(config.model).lexically_normal().filename().string()
                               : config.model_name;
  std::string model_name = name;
  if (model_name.empty()) model_name = std::filesystem::absolute(config.model).parent_path().filename().string();
  ServerDiscoveryConfig d;
  d.initial_peers = config.initial_peers;
  d.dht_listen = config.dht_listen.empty() ? HostPort{parse_host_port(config.listen, true).host, 0}.to_string()
                                           : config.dht_listen;
  d.fingerprint = model_id;
  core::BalancerNodeConfig& b = d.balancer;
  b.peer = server_peer_id(address, model_name);
  b.address = address;
  b.model_id = model_name;
  b.model_blocks = static_cast<uint32_t>(model.num_layers);
  b.num_blocks = config.num_blocks;
  if (!config.blocks.empty()) b.blocks = compute->span();
  b.throughput_rps = throughput_rps;
  b.inference_rps = inference_rps;
  b.adapters = adapter_names;
  b.cache_tokens_free = config.cache_tokens;
  b.join_delay_s = config.join_delay_s;
  b.balance_period_s = config.balance_period_s;
  b.balance_quality = config.balance_quality;
  b.update_period_s = config.update_period_s;
  b.seed = config.seed != 0 ? config.seed : b.peer.value;
  discovery =
      std::make_unique<ServerDiscovery>(io, clock, std::move(d), [this](core::BlockSpan span) { move_to_span(span); });
  discovery->set_cache_probe([this] { return block_server ? block_server->cache_tokens_free() : config.cache_tokens; });
  discovery->set_load_probe([this] { return block_server ? block_server->load(clock.now()) : core::ServerLoad{}; });
  log_line(fmt::format("model '{}' in the DHT through {} (own DHT node {}), peer {}", model_name,
                       fmt::join(config.initial_peers, ","), discovery->dht_address(), b.peer.to_string()));
}

void Server::Impl::move_to_span(core::BlockSpan span) {
  const uint64_t load = ++loads;
  loading_span = span;
  if (compute && compute->span() == span) return install(load, compute);
  log_line(fmt::format("loading blocks {}{}", span.to_string(),
                       compute ? fmt::format(" (blocks {} keep serving meanwhile)", compute->span().to_string()) : ""));
  loader->post([this, load, span] {
    try {
      auto loaded = std::make_shared<SpanCompute>(compute_config(span));
      asio::post(io, [this, load, loaded] { install(load, loaded); });
    } catch (const std::exception& e) {
      // Leave the node in `loading`: its records say joining, so no client routes here.
      asio::post(io, [span, what = std::string(e.what())] {
        log_line(fmt::format("could not load blocks {}: {}", span.to_string(), what));
      });
    }
  });
}

namespace {

// Rows one batched step may merge when the user does not say. On a CPU, 8: `bench-block --batch`
// on a 7B-shaped block (1 thread) measured 8 sessions at 1.7x one session's step for bf16 and 2.3x
// for int8, and 16 at 3.6x and 6.1x (bf16 leaves the kernels past 8 rows, int8 turns
// compute-bound), so per session 16 costs more than 8. On a GPU, a batch still far from
// compute-bound for the models served.
uint32_t default_max_batch(const SpanCompute& serving) {
  if (serving.describe_compute().rfind("cpu", 0) == 0) return std::min<uint32_t>(8, gpu::kernels::kMatvecRowsMax);
  return 32;
}

}  // namespace

core::BlockServerConfig Server::Impl::block_server_config(const SpanCompute& serving) const {
  core::BlockServerConfig server;
  server.model_id = model_id;
  server.span = serving.span();
  server.hidden_size = serving.hidden_size();
  server.cache_tokens = config.cache_tokens;
  server.session_idle_timeout_s = config.session_idle_timeout_s;
  server.inference_rps = inference_rps;
  server.forward_rps = forward_rps;
  server.throughput_rps = throughput_rps;
  server.adapters = adapter_names;
  server.request_tokens_max = config.request_tokens_max;
  server.client_cache_tokens_max = config.client_cache_tokens_max;
  server.client_opens_waiting_max = config.client_opens_waiting_max;
  server.client_tasks_queued_max = config.client_tasks_queued_max;
  server.tasks_queued_max = config.tasks_queued_max;
  server.session_idle_contended_s = config.session_idle_contended_s;
  server.max_batch = config.max_batch > 0 ? config.max_batch : default_max_batch(serving);
  server.batch_wait_s = config.batch_wait_ms / 1000.0;
  return server;
}

void Server::Impl::install(uint64_t load, std::shared_ptr<SpanCompute> loaded) {
  if (load != loads) return;  // a later move replaced this one
  loading_span.reset();
  const core::BlockSpan span = loaded->span();
  if (compute != loaded || !block_server) {
    if (block_server) {
      // The old span's sessions cannot continue here: each client is told so per session and
      // recovers on servers that hold those blocks; connections stay open for the new span.
      log_line(fmt::format("now serving blocks {}: ending the sessions of blocks {}", span.to_string(),
                           block_server->config().span.to_string()));
      std::vector<Effect> effects;
      block_server->leave(fmt::format("the server moved to blocks {}", span.to_string()), effects);
      carry_out(effects);
    }
    timers.cancel_all();
    block_server.emplace(block_server_config(*loaded));
    compute = std::move(loaded);
    ++serving;
    log_line(fmt::format("serving blocks {}", span.to_string()));
  }
  if (!accepting) {
    accepting = true;
    accept();
  }
  if (discovery) discovery->span_loaded(span);
}

void Server::Impl::shut_down() {
  if (!discovery || shutdown_timer) {
    io.stop();
    return;
  }
  log_line("announcing offline");
  discovery->stop();
  // The puts leave on OpenDHT's thread: the node stays until they are done (stored or given up),
  // at most 5 s, so a loaded machine does not lose the goodbye (records would linger as online).
  shutdown_timer.emplace(io);
  wait_for_goodbye(std::chrono::steady_clock::now() + std::chrono::seconds(5));
}

void Server::Impl::wait_for_goodbye(std::chrono::steady_clock::time_point give_up_at) {
  if (!discovery->announcing() || std::chrono::steady_clock::now() >= give_up_at) return io.stop();
  shutdown_timer->expires_after(std::chrono::milliseconds(50));
  shutdown_timer->async_wait([this, give_up_at](const asio::error_code&) { wait_for_goodbye(give_up_at); });
}

void Server::Impl::accept() {
  acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) return accept_failed(ec);
    accept_backoff_s = 0;
    on_accepted(std::move(socket));
    accept();
  });
}

void Server::Impl::accept_failed(const asio::error_code& ec) {
  // At the fd limit (EMFILE) the pending connection stays in the backlog and the listening socket
  // stays readable: accepting again at once would spin at full CPU until an fd frees.
  if (accept_backoff_s == 0) {
    log_line(fmt::format("accept failed: {} ({} connections open); retrying with backoff", ec.message(), peers.size()));
  }
  accept_backoff_s = std::min(1.0, accept_backoff_s == 0 ? 0.01 : 2 * accept_backoff_s);
  if (!accept_timer) accept_timer.emplace(io);
  accept_timer->expires_after(seconds(accept_backoff_s));
  accept_timer->async_wait([this](const asio::error_code& wait_ec) {
    if (!wait_ec) accept();
  });
}

void Server::Impl::sweep_idle_connections() {
  if (config.idle_timeout_s <= 0) return;
  if (!idle_timer) idle_timer.emplace(io);
  idle_timer->expires_after(seconds(std::clamp(config.idle_timeout_s / 4, 0.05, 1.0)));
  idle_timer->async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    const auto cutoff = std::chrono::steady_clock::now() - seconds(config.idle_timeout_s);
    for (auto& [peer, connection] : peers) {
      // fail() reports the close later, from the event loop: `peers` is not changed under us.
      if (connection->last_activity() >= cutoff || (block_server && block_server->holds_work(peer))) continue;
      connection->fail(core::Error{core::ErrorCode::timeout,
                                   fmt::format("no request for {} s and no session here: closing the connection "
                                               "(--idle-timeout)",
                                               config.idle_timeout_s)});
    }
    sweep_idle_connections();
  });
}

void Server::Impl::on_accepted(asio::ip::tcp::socket socket) {
  ConnectionConfig connection_config;
  connection_config.limits.max_frame_bytes = config.max_frame_bytes;
  connection_config.frame_timeout_s = config.frame_timeout_s;
  connection_config.bad_body = ConnectionConfig::BadBody::reply;
  auto connection = std::make_shared<Connection>(std::move(socket), connection_config);
  if (peers.size() >= config.max_connections) {
    // Told why, then closed once the reply is written; it never becomes a peer of the core.
    if (connections_refused++ % 1000 == 0) {
      log_line(
          fmt::format("{} connection(s) refused at --max-connections {}", connections_refused, config.max_connections));
    }
    connection->fail(core::Error{core::ErrorCode::overloaded,
                                 fmt::format("this server has its maximum of {} connections open; try again "
                                             "later or another server",
                                             config.max_connections)});
    return;
  }
  const PeerId peer{next_peer++};
  peers.emplace(peer, connection);
  connection->start(
      [this, peer](core::Message message) {
        feed(core::MessageReceived{peer, std::move(message)});
      },
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
  if (!block_server) return refuse_before_span(input);
  std::vector<Effect> effects;
  block_server->handle(clock.now(), input, effects);
  carry_out(effects);
}

void Server::Impl::refuse_before_span(const core::Input& input) {
  const auto* received = std::get_if<core::MessageReceived>(&input);
  if (!received) return;
  auto it = peers.find(received->from);
  if (it == peers.end()) return;
  const std::string why =
      loading_span ? fmt::format("this server is loading blocks {}; try again shortly", loading_span->to_string())
                   : "this server is still choosing its blocks; try again shortly";
  if (auto reply = core::refusal(received->message, core::Error{core::ErrorCode::span_not_served, why})) {
    it->second->send(std::move(*reply));
  }
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
    } else if (auto* batch = std::get_if<core::StartBatch>(&effect)) {
      start_batch(std::move(batch->requests));
    } else if (auto* drop = std::get_if<core::DropCache>(&effect)) {
      worker->post([c = compute, cache = drop->cache_id] { c->drop_cache(cache); });
    }
    // Announce / DirectoryLookup / MoveToSpan come from the BalancerNode (server_discovery.h).
  }
}

void Server::Impl::start_compute(core::ComputeRequest request) {
  worker->post([this, c = compute, generation = serving, request = std::move(request)] {
    core::ComputeFinished done{request.task_id, c->run(request)};
    asio::post(io, [this, generation, kind = request.kind, done = std::move(done)]() mutable {
      if (generation != serving) return;  // a result for a span served before a move: dropped
      lie_if_drilled(kind, done);
      feed(done);
    });
  });
}

// --lie-after-steps: past the honest steps, inference and forward outputs come back scaled.
void Server::Impl::lie_if_drilled(core::ComputeKind kind, core::ComputeFinished& done) {
  if (config.lie_after_steps == 0 || kind == core::ComputeKind::backward || !done.result.ok()) return;
  if (++outputs_computed <= config.lie_after_steps) return;
  core::Activation& outputs = done.result.value().outputs;
  if (!outputs.data) return;
  const auto scale = static_cast<float>(config.lie_scale);
  core::Activation lie = activation_from_tensor(tensor_from_activation(outputs) * scale, outputs.compression);
  lie.dtype = outputs.dtype;
  outputs = std::move(lie);
}

void Server::Impl::start_batch(std::vector<core::ComputeRequest> requests) {
  ++batches_started;
  worker->post([this, c = compute, generation = serving, requests = std::move(requests)] {
    auto results = c->run_batch(requests);
    std::vector<core::ComputeFinished> done;
    for (size_t i = 0; i < requests.size(); ++i) done.push_back({requests[i].task_id, std::move(results[i])});
    std::vector<core::ComputeKind> kinds;
    for (const auto& r : requests) kinds.push_back(r.kind);
    asio::post(io, [this, generation, kinds = std::move(kinds), done = std::move(done)]() mutable {
      if (generation != serving) return;  // results for a span served before a move: dropped
      for (size_t i = 0; i < done.size(); ++i) {
        lie_if_drilled(kinds[i], done[i]);
        feed(done[i]);
      }
    });
  });
}

Server::Server(const ServeConfig& config) : impl_(std::make_unique<Impl>(config)) {}

Server::~Server() {
  // Stop the threads before the io_context and the compute they post to go away.
  if (impl_) {
    impl_->worker.reset();
    impl_->loader.reset();
    impl_->discovery.reset();
  }
}

std::string Server::listen_address() const { return to_string(impl_->acceptor.local_endpoint()); }

std::string Server::announce_address() const {
  return impl_->config.announce_addr.empty() ? listen_address() : impl_->config.announce_addr;
}

const std::string& Server::model_id() const { return impl_->model_id; }

core::BlockSpan Server::span() const { return impl_->compute ? impl_->compute->span() : core::BlockSpan{}; }

uint64_t Server::batches_started() const { return impl_->batches_started.load(); }

std::string Server::describe() const {
  if (!impl_->compute) {
    return fmt::format("{} blocks of {} (fingerprint {}) to choose in the swarm, {} cache tokens per block",
                       impl_->config.num_blocks, impl_->config.model, impl_->model_id, impl_->config.cache_tokens);
  }
  return fmt::format("blocks {} of {} (fingerprint {}), {}, {:.1f} MB of weights, {} cache tokens per block",
                     span().to_string(), impl_->config.model, impl_->model_id, impl_->compute->describe_compute(),
                     impl_->compute->weight_bytes() / 1e6, impl_->config.cache_tokens) +
         (impl_->adapter_names.empty() ? std::string()
                                       : fmt::format(", LoRA adapters {}", fmt::join(impl_->adapter_names, ",")));
}

void Server::run(bool handle_signals) {
  if (handle_signals) {
    impl_->signals.emplace(impl_->io, SIGINT, SIGTERM);
    impl_->signals->async_wait([this](const asio::error_code& ec, int) {
      if (!ec) impl_->shut_down();
    });
  }
  // Clients are accepted at once; before the first span is loaded they are told so (span_not_served).
  impl_->accepting = true;
  impl_->accept();
  impl_->sweep_idle_connections();
  if (impl_->discovery) impl_->discovery->start();  // the first span comes through MoveToSpan
  impl_->io.run();
}

void Server::stop() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->shut_down(); });
}

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

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
#include "net/dht/identity.h"
#include "net/rpc/address.h"
#include "net/rpc/connection.h"
#include "net/rpc/timers.h"
#include "net/rpc/worker.h"
#include "net/server/identity_answers.h"
#include "net/server/server_connections.h"
#include "net/server/server_discovery.h"
#include "net/server/server_settings.h"
#include "net/server/throughput_measure.h"

namespace bouquet::net {

using core::Effect;
using core::PeerId;

struct Server::Impl {
  explicit Impl(const ServeConfig& config);

  // The core's driver: inputs in, effects carried out.
  void feed(const core::Input& input);
  void carry_out(std::vector<Effect>& effects);
  void refuse_before_span(const core::Input& input);
  // Compute on the worker thread; results come back through the io_context.
  void start_compute(core::ComputeRequest request);
  void start_batch(std::vector<core::ComputeRequest> requests);
  void lie_if_drilled(core::Message& message);
  // Spans: what the balancer asks for is loaded on the loader thread, then installed.
  SpanComputeConfig compute_config(core::BlockSpan span) const;
  // --device cuda without --num-blocks: blocks and cache budget from the GPU's free memory.
  void size_from_gpu_memory(const SpanCompute& probe, uint64_t free_bytes);
  void start_discovery();
  void move_to_span(core::BlockSpan span);
  void install(uint64_t load, std::shared_ptr<SpanCompute> loaded);
  void start_connections();
  void send_message(PeerId to, core::Message message);  // with an identity proof where one is owed
  void shut_down();
  void wait_for_goodbye(std::chrono::steady_clock::time_point give_up_at);

  ServeConfig config;
  std::string model_id;
  gpu::ModelConfig model;
  asio::io_context io;
  DriverClock clock;
  TimerTable timers;
  ServerConnections connections;
  // Shared with the compute jobs in flight, so a move can replace it while the worker runs one.
  std::shared_ptr<SpanCompute> compute;
  std::optional<core::BlockServer> block_server;
  uint64_t serving = 0;                         // bumped per installed span: results of an older one are dropped
  uint64_t loads = 0;                           // bumped per requested load: only the latest is installed
  std::optional<core::BlockSpan> loading_span;  // the span being loaded, for the refusals meanwhile
  AnnouncedSpeeds speeds;
  std::vector<std::string> adapter_names;  // the LoRA adapters loaded, announced as such
  std::optional<asio::signal_set> signals;
  std::atomic<uint64_t> batches_started{0};
  std::atomic<uint64_t> computations_started{0};
  uint64_t steps_received = 0;  // for --crash-after-steps
  uint64_t outputs_sent = 0;    // for --lie-after-steps
  std::unique_ptr<ServerDiscovery> discovery;
  // Signs records (discovery) and answers identity challenges; --identity keeps it across starts.
  std::shared_ptr<const PeerIdentity> identity;
  std::optional<IdentityAnswers> identity_answers;
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

ServerConnectionsConfig connections_config(const ServeConfig& config) {
  check_serve_config(config);  // before binding: a wrong flag is one clear line
  return ServerConnectionsConfig{config.listen, config.max_connections, config.idle_timeout_s, config.frame_timeout_s,
                                 config.max_frame_bytes};
}

}  // namespace

// The address is bound first: a port in use is one clear line before any weights are read.
Server::Impl::Impl(const ServeConfig& c)
    : config(c),
      timers(io, clock, [this](core::TimerId id) { feed(core::TimerFired{id}); }),
      connections(io, connections_config(c)) {
  if (config.threads > 0) at::set_num_threads(config.threads);
  const std::optional<core::BlockSpan> span =
      config.blocks.empty() ? std::nullopt : std::optional<core::BlockSpan>(parse_block_span(config.blocks));
  if (!config.announce_addr.empty()) parse_host_port(config.announce_addr);
  model_id = model_fingerprint(config.model);
  identity = std::make_shared<const PeerIdentity>(
      config.identity.empty() ? PeerIdentity::generate() : PeerIdentity::load_or_create(config.identity));
  identity_answers.emplace(identity, model_id);
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
  const bool discovering = !config.initial_peers.empty();
  if (discovering) {
    // One block is enough to measure per-block speed and size; a pinned server has its span.
    std::unique_ptr<SpanCompute> probe;
    if (!compute) probe = std::make_unique<SpanCompute>(compute_config(core::BlockSpan{0, 1}));
    SpanCompute& measured = compute ? *compute : *probe;
    adapter_names = measured.adapter_names();  // a bad adapter fails here, before joining
    if (!span && config.num_blocks == 0) {
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
    const MeasuredSpeed measured_speed =
        cached_block_speed(ThroughputKey{model_id, config.device, config.dtype, config.quant, at::get_num_threads()},
                           measured, [](const std::string& line) { log_line(line); });
    speeds =
        announced_speeds(config, measured_speed, span ? span->size() : config.num_blocks,
                         static_cast<uint32_t>(model.hidden_size), [](const std::string& line) { log_line(line); });
  }

  if (compute) {
    block_server.emplace(block_server_config(config, model_id, *compute, speeds, adapter_names));
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

void Server::Impl::start_discovery() {
  const std::string address = config.announce_addr.empty() ? connections.local_address() : config.announce_addr;
  ServerDiscoveryConfig d =
      discovery_config(config, identity, address, model_id, static_cast<uint32_t>(model.num_layers),
                       compute ? std::optional<core::BlockSpan>(compute->span()) : std::nullopt, speeds, adapter_names);
  const core::PeerId peer = d.balancer.peer;
  discovery =
      std::make_unique<ServerDiscovery>(io, clock, std::move(d), [this](core::BlockSpan span) { move_to_span(span); });
  discovery->set_cache_probe([this] { return block_server ? block_server->cache_tokens_free() : config.cache_tokens; });
  discovery->set_load_probe([this] { return block_server ? block_server->load(clock.now()) : core::ServerLoad{}; });
  log_line(fmt::format("model '{}' in the DHT through {} (own DHT node {}), peer {}", announced_model_name(config),
                       fmt::join(config.initial_peers, ","), discovery->dht_address(), peer.to_string()));
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
    block_server.emplace(block_server_config(config, model_id, *loaded, speeds, adapter_names));
    compute = std::move(loaded);
    ++serving;
    log_line(fmt::format("serving blocks {}", span.to_string()));
  }
  start_connections();
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

void Server::Impl::start_connections() {
  connections.start(
      [this](PeerId peer, core::Message message) {
        feed(core::MessageReceived{peer, std::move(message)});
      },
      [this](PeerId peer, std::string reason) {
        feed(core::PeerUnreachable{peer, std::move(reason)});
      },
      [this](PeerId peer) { return block_server && block_server->holds_work(peer); });
}

void Server::Impl::send_message(PeerId to, core::Message message) {
  identity_answers->sending(to, message);
  connections.send(to, message);
}

void Server::Impl::feed(const core::Input& input) {
  if (const auto* received = std::get_if<core::MessageReceived>(&input)) {
    identity_answers->received(received->from, received->message);
  } else if (const auto* gone = std::get_if<core::PeerUnreachable>(&input)) {
    identity_answers->forget(gone->peer);
  }
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
  const std::string why =
      loading_span ? fmt::format("this server is loading blocks {}; try again shortly", loading_span->to_string())
                   : "this server is still choosing its blocks; try again shortly";
  if (auto reply = core::refusal(received->message, core::Error{core::ErrorCode::span_not_served, why})) {
    send_message(received->from, std::move(*reply));
  }
}

void Server::Impl::carry_out(std::vector<Effect>& effects) {
  for (Effect& effect : effects) {
    if (auto* send = std::get_if<core::SendMessage>(&effect)) {
      // A peer already gone gets nothing; its PeerUnreachable has been or will be fed.
      lie_if_drilled(send->message);
      send_message(send->to, std::move(send->message));
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
  ++computations_started;
  worker->post([this, c = compute, generation = serving, request = std::move(request)] {
    core::ComputeFinished done{request.task_id, c->run(request)};
    asio::post(io, [this, generation, done = std::move(done)]() mutable {
      if (generation != serving) return;  // a result for a span served before a move: dropped
      feed(done);
    });
  });
}

// --lie-after-steps: past the honest steps, inference and forward outputs come back scaled.
// Counted in the replies sent, not in computations: a step computed in chunks is one step.
void Server::Impl::lie_if_drilled(core::Message& message) {
  if (config.lie_after_steps == 0) return;
  core::Activation* found = nullptr;
  if (auto* step = std::get_if<core::StepResult>(&message)) found = &step->hidden_states;
  if (auto* forward = std::get_if<core::ForwardResult>(&message)) found = &forward->hidden_states;
  if (!found || ++outputs_sent <= config.lie_after_steps) return;
  core::Activation& outputs = *found;
  if (!outputs.data) return;
  const auto scale = static_cast<float>(config.lie_scale);
  core::Activation lie = activation_from_tensor(tensor_from_activation(outputs) * scale, outputs.compression);
  lie.dtype = outputs.dtype;
  outputs = std::move(lie);
}

void Server::Impl::start_batch(std::vector<core::ComputeRequest> requests) {
  ++batches_started;
  ++computations_started;
  worker->post([this, c = compute, generation = serving, requests = std::move(requests)] {
    auto results = c->run_batch(requests);
    std::vector<core::ComputeFinished> done;
    for (size_t i = 0; i < requests.size(); ++i) done.push_back({requests[i].task_id, std::move(results[i])});
    asio::post(io, [this, generation, done = std::move(done)]() mutable {
      if (generation != serving) return;  // results for a span served before a move: dropped
      for (auto& d : done) feed(d);
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

std::string Server::listen_address() const { return impl_->connections.local_address(); }

std::string Server::announce_address() const {
  return impl_->config.announce_addr.empty() ? listen_address() : impl_->config.announce_addr;
}

const std::string& Server::model_id() const { return impl_->model_id; }

core::BlockSpan Server::span() const { return impl_->compute ? impl_->compute->span() : core::BlockSpan{}; }

uint64_t Server::batches_started() const { return impl_->batches_started.load(); }

uint64_t Server::computations_started() const { return impl_->computations_started.load(); }

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
  impl_->start_connections();
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

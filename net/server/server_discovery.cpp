#include "net/server/server_discovery.h"

#include <fmt/core.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "net/dht/dht_directory.h"

namespace bouquet::net {

namespace {

void log_line(const std::string& line) {
  fmt::print(stderr, "bouquet serve: {}\n", line);
  std::fflush(stderr);
}

}  // namespace

ServerDiscovery::ServerDiscovery(asio::io_context& io, const DriverClock& clock, ServerDiscoveryConfig config,
                                 MoveToSpan move_to_span)
    : io_(io),
      clock_(clock),
      config_(std::move(config)),
      move_to_span_(std::move(move_to_span)),
      node_(config_.balancer),
      timers_(io, clock, [this](core::TimerId id) { feed(core::TimerFired{id}); }),
      lookup_watchdog_(io) {
  DhtDirectoryConfig dht;
  dht.listen = config_.dht_listen;
  dht.initial_peers = config_.initial_peers;
  dht.model_blocks = config_.balancer.model_blocks;
  dht.fingerprint = config_.fingerprint;
  dht.identity = config_.identity;
  dht.clock = [&clock] { return clock.now(); };
  dht.log = [](const std::string& line) {
    if (!routine_dht_skip(line)) log_line("dht: " + line);
  };
  const double storage_s = dht.record_lifetime_s;
  directory_ = std::make_unique<DhtDirectory>(std::move(dht));
  if (config_.balancer.update_period_s > storage_s) {
    log_line(
        fmt::format("--update-period {:.0f} s is longer than the DHT keeps a record ({:.0f} s): this server "
                    "will vanish from the directory between announcements",
                    config_.balancer.update_period_s, storage_s));
  }
}

ServerDiscovery::~ServerDiscovery() {
  *alive_ = false;
  timers_.cancel_all();
  lookup_watchdog_.cancel();
}

std::string ServerDiscovery::dht_address() const { return directory_->address(); }

void ServerDiscovery::start() {
  std::vector<core::Effect> effects;
  node_.start(clock_.now(), effects);
  carry_out(effects);
}

void ServerDiscovery::span_loaded(core::BlockSpan span) { feed(core::SpanLoaded{span}); }

void ServerDiscovery::stop() {
  std::vector<core::Effect> effects;
  node_.stop(clock_.now(), effects);
  carry_out(effects);
  timers_.cancel_all();
  lookup_watchdog_.cancel();
}

bool ServerDiscovery::announcing() const { return directory_ && directory_->puts_in_flight() > 0; }

void ServerDiscovery::feed(const core::Input& input) {
  if (std::holds_alternative<core::TimerFired>(input)) {
    if (cache_probe_) node_.set_cache_tokens_free(cache_probe_());
    if (load_probe_) node_.set_load(load_probe_());
  }
  if (std::holds_alternative<core::DirectoryAnswer>(input)) lookup_watchdog_.cancel();
  std::vector<core::Effect> effects;
  node_.handle(clock_.now(), input, effects);
  carry_out(effects);
}

void ServerDiscovery::carry_out(std::vector<core::Effect>& effects) {
  for (core::Effect& effect : effects) {
    if (auto* set = std::get_if<core::SetTimer>(&effect)) {
      timers_.set(set->timer, set->at);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&effect)) {
      timers_.cancel(cancel->timer);
    } else if (auto* announce = std::get_if<core::Announce>(&effect)) {
      try {
        directory_->announce(*announce);
      } catch (const std::exception& e) {
        log_line(fmt::format("could not announce blocks {}: {}", announce->record.span.to_string(), e.what()));
      }
    } else if (auto* lookup = std::get_if<core::DirectoryLookup>(&effect)) {
      lookup_watchdog_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(config_.lookup_timeout_s)));
      lookup_watchdog_.async_wait(
          [this, alive = std::weak_ptr<bool>(alive_), id = lookup->lookup_id](const asio::error_code& ec) {
            auto a = alive.lock();
            if (ec || !a || !*a) return;
            log_line(
                fmt::format("no directory answer within {:.0f} s; going on with no records", config_.lookup_timeout_s));
            feed(core::DirectoryAnswer{id, {}});
          });
      try {
        directory_->lookup(*lookup, io_.get_executor(),
                           [this, alive = std::weak_ptr<bool>(alive_)](core::DirectoryAnswer answer) {
                             if (auto a = alive.lock(); a && *a) feed(answer);
                           });
      } catch (const std::exception& e) {
        // The node waits for this answer: an empty one lets it go on (join where nobody is).
        log_line(fmt::format("directory lookup failed: {}", e.what()));
        asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_), id = lookup->lookup_id] {
          if (auto a = alive.lock(); a && *a) feed(core::DirectoryAnswer{id, {}});
        });
      }
    } else if (auto* move = std::get_if<core::MoveToSpan>(&effect)) {
      const auto& decision = node_.last_decision();
      if (decision && decision->move) {
        log_line(fmt::format("rebalancing to blocks {}: {}", move->span.to_string(), decision->reason));
      } else {
        log_line(fmt::format("taking blocks {}", move->span.to_string()));
      }
      asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_), span = move->span] {
        if (auto a = alive.lock(); a && *a) move_to_span_(span);
      });
    }
  }
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    uint64_t kib = 0;
    if (fields >> kib) return kib * 1024;
  }
  return 0;
}

}  // namespace bouquet::net

#include "net/health/health_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/core.h>
#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "net/dht/dht_directory.h"
#include "net/health/health_state.h"
#include "net/rpc/address.h"

namespace bouquet::net::health {
namespace {

// Seconds a TCP connect to `address` takes; nothing when it fails or takes over timeout_s.
std::optional<double> connect_rtt_s(const std::string& address, double timeout_s) {
  HostPort where;
  try {
    where = parse_host_port(address);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(where.host.c_str(), std::to_string(where.port).c_str(), &hints, &found) != 0 || !found) {
    return std::nullopt;
  }
  std::optional<double> rtt;
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    const auto start = std::chrono::steady_clock::now();
    int rc = connect(fd, found->ai_addr, found->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) == 1) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        rc = error == 0 ? 0 : -1;
      }
    }
    if (rc == 0) rtt = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    close(fd);
  }
  freeaddrinfo(found);
  return rtt;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

int run_health(const HealthConfig& config) {
  if (config.initial_peers.empty()) throw std::invalid_argument("--initial-peers lists no DHT node");
  if (!(config.refresh_s > 0)) throw std::invalid_argument("--refresh must be > 0 seconds");
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  DhtDirectoryConfig dht;
  dht.listen = config.dht_listen;
  dht.initial_peers = config.initial_peers;
  dht.log = [](const std::string& line) {
    if (!routine_dht_skip(line)) std::cerr << "health: dht: " << line << "\n";
  };
  DhtDirectory directory(dht);
  if (!directory.wait_connected(10)) {
    throw std::runtime_error(
        fmt::format("no DHT node answered at {} within 10 s", fmt::join(config.initial_peers, ",")));
  }

  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::string state = state_json({}, {}, unix_now());
  auto snapshot = [&] {
    const auto models = collect_swarm(directory, config.model, 0);
    RttTable rtt;
    for (const auto& m : models) {
      for (const auto& block : m.blocks) {
        for (const auto& r : block.servers) {
          if (rtt.count(r.address)) continue;
          if (auto s = connect_rtt_s(r.address, 1.0)) rtt[r.address] = *s;
        }
      }
    }
    std::string json = state_json(models, rtt, unix_now());
    std::lock_guard lock(mutex);
    state = std::move(json);
  };
  snapshot();
  std::thread monitor([&] {
    std::unique_lock lock(mutex);
    while (!wake.wait_for(lock, std::chrono::duration<double>(config.refresh_s), [&] { return stopping; })) {
      lock.unlock();
      try {
        snapshot();
      } catch (const std::exception& e) {
        std::cerr << "health: reading the swarm failed: " << e.what() << "\n";
      }
      lock.lock();
    }
  });

  httplib::Server http;
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(health_page_html(), "text/html; charset=utf-8");
  });
  http.Get("/api/v1/state", [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(mutex);
    res.set_header("Cache-Control", "no-store");
    res.set_content(state, "application/json");
  });
  const HostPort where = parse_host_port(config.listen, true);
  const int port = where.port == 0 ? http.bind_to_any_port(where.host)
                                   : (http.bind_to_port(where.host, where.port) ? where.port : -1);
  auto stop_monitor = [&] {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    monitor.join();
  };
  if (port <= 0) {
    stop_monitor();
    throw std::runtime_error(fmt::format("cannot listen on {}", config.listen));
  }
  fmt::print("health: listening on http://{}\n", HostPort{where.host, static_cast<uint16_t>(port)}.to_string());
  std::fflush(stdout);
  std::thread waiter([&http, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    http.stop();
  });
  http.listen_after_bind();
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  stop_monitor();
  return 0;
}

}  // namespace bouquet::net::health

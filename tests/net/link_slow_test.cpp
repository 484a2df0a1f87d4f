// `bouquet link` against plain blocking sockets: the delay a round trip sees, the rate a bulk
// transfer gets, an upstream that refuses or dies, the cut, and bad flags. Timing windows are
// generous on the slow side (2-core shared machines) and tight on the fast side, which the relay
// controls.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/link/link_relay.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// A socket bound to 127.0.0.1 (`port` 0: any free port) that does not listen: connections to it
// are refused, and no other socket can take its port while it is open.
int bind_on(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << "port " << port;
  return fd;
}

// A listening socket on 127.0.0.1 (`port` 0: any free port).
int listen_on(uint16_t port) {
  const int fd = bind_on(port);
  EXPECT_EQ(listen(fd, 16), 0);
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// A connected socket, or -1 when refused.
int connect_to(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool readable(int fd, double timeout_s) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout_s * 1000)) == 1;
}

// What a read within `timeout_s` gave: bytes (> 0), the end of the connection (0 or a reset:
// -1), or nothing (-2).
ssize_t read_some(int fd, char* buffer, size_t size, double timeout_s) {
  if (!readable(fd, timeout_s)) return -2;
  const ssize_t n = recv(fd, buffer, size, 0);
  return n < 0 ? -1 : n;
}

// An upstream on its own thread: echoes (or, with `sink`, swallows and counts) every connection's
// bytes; with `close_after_first_read`, closes a connection after its first read.
class Upstream {
 public:
  struct Options {
    uint16_t port = 0;
    bool sink = false;
    bool close_after_first_read = false;
  };
  explicit Upstream(Options options) : options_(options), listen_fd_(listen_on(options.port)) {
    port_ = port_of(listen_fd_);
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~Upstream() {
    stopping_ = true;
    thread_.join();
    close(listen_fd_);
    for (auto& t : connections_) t.join();
  }
  uint16_t port() const { return port_; }
  uint64_t bytes() const { return bytes_.load(); }
  Clock::time_point last_byte() {
    std::lock_guard lock(mutex_);
    return last_byte_;
  }
  int ended() const { return ended_.load(); }  // connections that saw their peer close

 private:
  void accept_loop() {
    while (!stopping_) {
      if (!readable(listen_fd_, 0.05)) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }
  void serve(int fd) {
    std::vector<char> buffer(1 << 16);
    while (!stopping_) {
      const ssize_t n = read_some(fd, buffer.data(), buffer.size(), 0.05);
      if (n == -2) continue;
      if (n <= 0) {
        ++ended_;
        break;
      }
      bytes_ += static_cast<uint64_t>(n);
      {
        std::lock_guard lock(mutex_);
        last_byte_ = Clock::now();
      }
      if (!options_.sink) send(fd, buffer.data(), static_cast<size_t>(n), MSG_NOSIGNAL);
      if (options_.close_after_first_read) break;
    }
    close(fd);
  }

  Options options_;
  int listen_fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int> ended_{0};
  std::mutex mutex_;
  Clock::time_point last_byte_{};
  std::vector<std::thread> connections_;  // touched by the accept thread only until it is joined
  std::thread thread_;
};

LinkConfig link_to(uint16_t port, double delay_ms) {
  LinkConfig config;
  config.to = fmt::format("127.0.0.1:{}", port);
  config.delay_ms = delay_ms;
  return config;
}

// Seconds for one byte to go through the relay to the echo and back.
double round_trip_s(int fd) {
  char byte = 'x';
  const auto start = Clock::now();
  EXPECT_EQ(send(fd, &byte, 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(read_some(fd, &byte, 1, 5), 1);
  return since(start);
}

TEST(Link, RoundTripIsTwiceTheDelay) {
  Upstream echo({});
  LinkRelay relay(link_to(echo.port(), 20));
  relay.start();
  const int fd = connect_to(relay.port());
  ASSERT_GE(fd, 0);
  std::vector<double> trips;
  for (int i = 0; i < 15; ++i) trips.push_back(round_trip_s(fd));
  close(fd);
  std::sort(trips.begin(), trips.end());
  fmt::print("round trips through a 20 ms link: min {:.2f} ms, median {:.2f} ms, max {:.2f} ms\n", trips.front() * 1e3,
             trips[trips.size() / 2] * 1e3, trips.back() * 1e3);
  EXPECT_GE(trips.front(), 0.040);            // never faster than the link
  EXPECT_LE(trips[trips.size() / 2], 0.055);  // 2 x delay + scheduling noise
}

TEST(Link, JitterOnlyAddsAndIsSeeded) {
  const uint64_t seed = testing::test_seed(7);
  Upstream echo({});
  LinkConfig config = link_to(echo.port(), 10);
  config.jitter_ms = 10;
  config.seed = seed;
  LinkRelay relay(config);
  relay.start();
  const int fd = connect_to(relay.port());
  ASSERT_GE(fd, 0);
  std::vector<double> trips;
  for (int i = 0; i < 15; ++i) trips.push_back(round_trip_s(fd));
  close(fd);
  std::sort(trips.begin(), trips.end());
  EXPECT_GE(trips.front(), 0.020);
  EXPECT_LE(trips[trips.size() / 2], 0.040 + 0.015);
  EXPECT_GT(trips.back() - trips.front(), 0.001) << "no jitter seen over 15 round trips";
}

TEST(Link, BulkTransferReachesTheBandwidth) {
  Upstream sink({.sink = true});
  LinkConfig config = link_to(sink.port(), 5);
  config.bandwidth_bps = 64e6;        // 8 MB/s
  const uint64_t total = 12'000'000;  // 1.5 s of it
  LinkRelay relay(config);
  relay.start();
  const int fd = connect_to(relay.port());
  ASSERT_GE(fd, 0);
  std::vector<char> block(1 << 16, 'b');
  const auto start = Clock::now();
  for (uint64_t sent = 0; sent < total;) {
    const ssize_t n = send(fd, block.data(), std::min<uint64_t>(block.size(), total - sent), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    sent += static_cast<uint64_t>(n);
  }
  for (int i = 0; i < 100 && sink.bytes() < total; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  close(fd);
  ASSERT_EQ(sink.bytes(), total);
  const double elapsed_s = std::chrono::duration<double>(sink.last_byte() - start).count();
  const double rate_bps = static_cast<double>(total) * 8.0 / (elapsed_s - 0.005);
  fmt::print("12 MB through a 64 Mbit/s link in {:.3f} s: {:.2f} Mbit/s\n", elapsed_s, rate_bps / 1e6);
  EXPECT_NEAR(rate_bps, 64e6, 0.05 * 64e6);
}

TEST(Link, UpstreamRefusingOrDyingClosesTheClientAndTheRelayKeepsAccepting) {
  // The upstream port stays bound (not listening: connections are refused) until the relay holds
  // its own port, so the relay cannot be given the same one and relay to itself.
  const int reserved = bind_on(0);
  const uint16_t port = port_of(reserved);
  LinkRelay relay(link_to(port, 2));
  relay.start();
  ASSERT_NE(relay.port(), port);
  char buffer[16];
  {
    const int fd = connect_to(relay.port());
    ASSERT_GE(fd, 0);
    send(fd, "a", 1, MSG_NOSIGNAL);
    EXPECT_LE(read_some(fd, buffer, sizeof buffer, 5), 0) << "a refused upstream must end the client's connection";
    close(fd);
  }
  close(reserved);
  {
    Upstream dying({.port = port, .close_after_first_read = true});
    const int fd = connect_to(relay.port());
    ASSERT_GE(fd, 0);
    send(fd, "b", 1, MSG_NOSIGNAL);
    EXPECT_EQ(read_some(fd, buffer, sizeof buffer, 5), 1);  // the echo, then its close
    EXPECT_LE(read_some(fd, buffer, sizeof buffer, 5), 0) << "an upstream that closed must end the client's side";
    close(fd);
  }
  Upstream echo({.port = port});
  const int fd = connect_to(relay.port());
  ASSERT_GE(fd, 0);
  EXPECT_LT(round_trip_s(fd), 1.0);
  close(fd);
  EXPECT_EQ(relay.connections_accepted(), 3u);
}

TEST(Link, CutClosesBothSidesAtItsTimeAndRefusesNewConnections) {
  Upstream echo({});
  LinkConfig config = link_to(echo.port(), 1);
  config.cut_after_s = 0.5;
  const auto start = Clock::now();
  LinkRelay relay(config);
  relay.start();
  const int fd = connect_to(relay.port());
  ASSERT_GE(fd, 0);
  EXPECT_LT(round_trip_s(fd), 0.4);
  char buffer[16];
  EXPECT_LE(read_some(fd, buffer, sizeof buffer, 5), 0);
  const double cut_s = since(start);
  close(fd);
  EXPECT_GE(cut_s, 0.5);
  EXPECT_LE(cut_s, 0.5 + 0.2);
  for (int i = 0; i < 40 && echo.ended() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_EQ(echo.ended(), 1) << "the upstream side must be closed too";
  EXPECT_EQ(connect_to(relay.port()), -1) << "a cut link accepts nothing";
}

TEST(Link, BadSettingsAreRefusedNamingTheFlag) {
  const auto error_of = [](LinkConfig config) -> std::string {
    try {
      LinkRelay relay(config);
    } catch (const LinkError& e) {
      return e.what();
    }
    return "";
  };
  LinkConfig good = link_to(9, 1);
  EXPECT_EQ(error_of(good), "");
  LinkConfig bad = good;
  bad.delay_ms = -1;
  EXPECT_NE(error_of(bad).find("--delay-ms"), std::string::npos);
  bad = good;
  bad.jitter_ms = std::nan("");
  EXPECT_NE(error_of(bad).find("--jitter-ms"), std::string::npos);
  bad = good;
  bad.bandwidth_bps = -5;
  EXPECT_NE(error_of(bad).find("--bandwidth-bps"), std::string::npos);
  bad = good;
  bad.to = "nowhere";
  EXPECT_NE(error_of(bad).find("--to"), std::string::npos);
  bad = good;
  bad.listen = "127.0.0.1:99999";
  EXPECT_NE(error_of(bad).find("--listen"), std::string::npos);
  // A relay to its own address would accept its own connections until it ran out of descriptors.
  const int reserved = bind_on(0);
  const uint16_t port = port_of(reserved);
  close(reserved);
  bad = link_to(port, 1);
  bad.listen = fmt::format("127.0.0.1:{}", port);
  EXPECT_NE(error_of(bad).find("own --listen address"), std::string::npos) << error_of(bad);
  bad.listen = fmt::format("0.0.0.0:{}", port);
  EXPECT_NE(error_of(bad).find("own --listen address"), std::string::npos) << error_of(bad);
}

// The command line: one line naming the flag, a non-zero exit, nothing left running.
TEST(Link, CommandRefusesBadFlags) {
  const auto run = [](const std::string& flags) {
    const std::string command = fmt::format("{} link {} 2>&1", BOUQUET_BINARY, flags);
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char buffer[512];
    while (fgets(buffer, sizeof buffer, pipe)) output += buffer;
    const int status = pclose(pipe);
    return std::make_pair(status, output);
  };
  auto [status, output] = run("--to 127.0.0.1:9 --delay-ms -3");
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--delay-ms"), std::string::npos) << output;
  std::tie(status, output) = run("--delay-ms 5");
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--to"), std::string::npos) << output;
  std::tie(status, output) = run("--to localhost --delay-ms 5");
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("'localhost' is not HOST:PORT"), std::string::npos) << output;
  std::tie(status, output) = run("--to 127.0.0.1:9 --delay-ms 5 --bandwidth-bps nan");
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--bandwidth-bps"), std::string::npos) << output;
}

}  // namespace
}  // namespace bouquet::net

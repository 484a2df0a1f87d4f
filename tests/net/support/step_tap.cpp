#include "tests/net/support/step_tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <span>
#include <stdexcept>
#include <variant>

#include "net/rpc/address.h"
#include "net/rpc/frame.h"

namespace bouquet::net::testing {
namespace {

int connect_to(const std::string& address) {
  const HostPort hp = parse_host_port(address);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(hp.port);
  ::inet_pton(AF_INET, hp.host.c_str(), &sa.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

StepTap::StepTap(std::string upstream, uint64_t at_step, std::function<void()> on_step)
    : upstream_(std::move(upstream)), at_step_(at_step), on_step_(std::move(on_step)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    throw std::runtime_error("step tap: cannot listen on 127.0.0.1");
  }
  address_ = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  acceptor_ = std::thread([this] { accept_loop(); });
}

StepTap::~StepTap() {
  stop_ = true;
  acceptor_.join();
  for (auto& t : threads_) t.join();
  for (int fd : fds_) ::close(fd);
  ::close(listen_fd_);
}

void StepTap::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    const int server = connect_to(upstream_);
    std::lock_guard lock(mutex_);
    fds_.push_back(client);
    if (server < 0) {
      ::shutdown(client, SHUT_RDWR);
      continue;
    }
    fds_.push_back(server);
    threads_.emplace_back([this, client, server] { pump(client, server, /*count_steps=*/true); });
    threads_.emplace_back([this, client, server] { pump(server, client, /*count_steps=*/false); });
  }
}

void StepTap::pump(int from, int to, bool count_steps) {
  FrameParser parser(uint64_t{1} << 30);
  uint8_t buffer[1 << 16];
  while (!stop_) {
    pollfd p{from, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(from, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    if (count_steps) {
      parser.feed(std::span<const uint8_t>(buffer, static_cast<size_t>(n)));
      while (auto body = parser.next()) {
        const auto message = decode_body(*body, FrameLimits{});
        if (message.ok() && std::holds_alternative<core::StepRequest>(message.value()) && ++steps_ == at_step_) {
          on_step_();
        }
      }
    }
    if (!write_all(to, buffer, static_cast<size_t>(n))) break;
  }
  // Either side gone: so is the relayed connection, in both directions.
  ::shutdown(from, SHUT_RDWR);
  ::shutdown(to, SHUT_RDWR);
}

}  // namespace bouquet::net::testing

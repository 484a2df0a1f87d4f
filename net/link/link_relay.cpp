#include "net/link/link_relay.h"

#include "core/rng.h"
#include "net/rpc/address.h"

#include <fmt/core.h>
#include <asio.hpp>

#include <pthread.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <deque>
#include <thread>
#include <vector>

namespace bouquet::net {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// A read takes at most this much: the unit the queue delays and serialises. Small enough that a
// chunk's serialisation at 100 Mbit/s (~1.3 ms) stays below the delays we emulate.
constexpr size_t kChunkBytes = 16 * 1024;
// A direction stops reading while this much waits in its queue, so a fast sender is held back by
// TCP as a real link would hold it back, and the relay's memory stays bounded.
constexpr size_t kQueueBytesMax = 4 * 1024 * 1024;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

void check_number(double value, double lo, const char* flag) {
  if (!std::isfinite(value) || value < lo) {
    throw LinkError(fmt::format("{}: {} is not a finite number >= {:g}", flag, value, lo));
  }
}

}  // namespace

struct LinkRelay::Impl {
  class Session;

  LinkConfig config;
  asio::io_context io;  // first: destroyed last, after every socket and timer below
  tcp::acceptor acceptor{io};
  asio::steady_timer cut_timer{io};
  asio::steady_timer retry_timer{io};
  tcp::resolver::results_type upstream;
  tcp::endpoint bound;  // kept: the acceptor closes at the cut, the address stays known
  std::vector<std::weak_ptr<Session>> sessions;
  core::Rng rng;
  std::atomic<uint64_t> accepted{0};
  std::thread thread;
  bool stopped = false;

  explicit Impl(const LinkConfig& c) : config(c), rng(c.seed) {}

  Clock::duration chunk_delay() {
    double delay_ms = config.delay_ms;
    if (config.jitter_ms > 0) delay_ms += config.jitter_ms * rng.uniform01();
    return seconds(delay_ms / 1e3);
  }
  Clock::duration serialisation(size_t bytes) const {
    return config.bandwidth_bps > 0 ? seconds(static_cast<double>(bytes) * 8.0 / config.bandwidth_bps)
                                    : Clock::duration::zero();
  }

  void accept();
  void close_all();
};

// One accepted connection and its upstream: two directions, each a delayed, rate-limited queue.
class LinkRelay::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& relay, tcp::socket client)
      : relay_(relay),
        client_(std::move(client)),
        upstream_(relay.io),
        up_(client_, upstream_, relay.io),
        down_(upstream_, client_, relay.io) {}

  void start() {
    asio::async_connect(upstream_, relay_.upstream,
                        [self = shared_from_this()](std::error_code ec, const tcp::endpoint&) {
                          if (self->closed_) return;
                          if (ec) {
                            fmt::print(stderr, "link: upstream {} refused: {}; closing the client's connection\n",
                                       self->relay_.config.to, ec.message());
                            self->close();
                            return;
                          }
                          asio::error_code ignored;
                          self->upstream_.set_option(tcp::no_delay(true), ignored);
                          self->read(self->up_);
                          self->read(self->down_);
                        });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    client_.close(ignored);
    upstream_.close(ignored);
    up_.timer.cancel();
    down_.timer.cancel();
  }

 private:
  struct Chunk {
    Clock::time_point leave;
    std::vector<char> bytes;  // empty: the sender's half-close
  };
  struct Direction {
    Direction(tcp::socket& f, tcp::socket& t, asio::io_context& io) : from(f), to(t), timer(io) {}
    tcp::socket& from;
    tcp::socket& to;
    asio::steady_timer timer;
    std::array<char, kChunkBytes> buffer{};
    std::deque<Chunk> queue;
    size_t queued_bytes = 0;
    Clock::time_point last_leave{};  // when the previous chunk's last byte finished serialising
    bool reading = false;
    bool writing = false;
    bool ended = false;      // the sender half-closed
    bool delivered = false;  // ... and the receiver was told
  };

  void read(Direction& d) {
    if (closed_ || d.reading || d.ended || d.queued_bytes >= kQueueBytesMax) return;
    d.reading = true;
    d.from.async_read_some(asio::buffer(d.buffer), [self = shared_from_this(), &d](std::error_code ec, size_t n) {
      d.reading = false;
      if (self->closed_) return;
      if (ec && ec != asio::error::eof) {
        self->close();  // reset or error: the other side cannot be told more than a close
        return;
      }
      if (ec == asio::error::eof) {
        d.ended = true;
        self->enqueue(d, {});
      } else {
        self->enqueue(d, std::vector<char>(d.buffer.begin(), d.buffer.begin() + static_cast<std::ptrdiff_t>(n)));
        self->read(d);
      }
    });
  }

  void enqueue(Direction& d, std::vector<char> bytes) {
    const Clock::time_point arrive = Clock::now() + relay_.chunk_delay();
    const Clock::time_point leave = std::max(arrive, d.last_leave) + relay_.serialisation(bytes.size());
    d.last_leave = leave;
    d.queued_bytes += bytes.size();
    d.queue.push_back(Chunk{leave, std::move(bytes)});
    if (!d.writing) send_next(d);
  }

  void send_next(Direction& d) {
    if (closed_ || d.queue.empty()) {
      d.writing = false;
      return;
    }
    d.writing = true;
    d.timer.expires_at(d.queue.front().leave);
    d.timer.async_wait([self = shared_from_this(), &d](std::error_code ec) {
      if (self->closed_ || ec) return;
      Chunk& chunk = d.queue.front();
      if (chunk.bytes.empty()) {
        asio::error_code ignored;
        d.to.shutdown(tcp::socket::shutdown_send, ignored);
        d.delivered = true;
        d.queue.pop_front();
        d.writing = false;
        if (self->up_.delivered && self->down_.delivered) self->close();
        return;
      }
      asio::async_write(d.to, asio::buffer(chunk.bytes), [self, &d](std::error_code ec, size_t) {
        if (self->closed_) return;
        if (ec) {
          self->close();
          return;
        }
        d.queued_bytes -= d.queue.front().bytes.size();
        d.queue.pop_front();
        self->send_next(d);
        self->read(d);  // resumes a direction that paused on a full queue
      });
    });
  }

  Impl& relay_;
  tcp::socket client_;
  tcp::socket upstream_;
  Direction up_;    // client -> upstream
  Direction down_;  // upstream -> client
  bool closed_ = false;
};

void LinkRelay::Impl::accept() {
  acceptor.async_accept([this](std::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      // Out of descriptors and the like: try again shortly rather than spin on the error.
      fmt::print(stderr, "link: accept failed: {}; retrying in 100 ms\n", ec.message());
      retry_timer.expires_after(std::chrono::milliseconds(100));
      retry_timer.async_wait([this](std::error_code ec) {
        if (!ec && acceptor.is_open()) accept();
      });
      return;
    } else {
      ++accepted;
      asio::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto session = std::make_shared<Session>(*this, std::move(socket));
      std::erase_if(sessions, [](const std::weak_ptr<Session>& s) { return s.expired(); });
      sessions.push_back(session);
      session->start();
    }
    accept();
  });
}

void LinkRelay::Impl::close_all() {
  asio::error_code ignored;
  acceptor.close(ignored);
  cut_timer.cancel();
  retry_timer.cancel();
  for (auto& weak : sessions) {
    if (auto session = weak.lock()) session->close();
  }
  sessions.clear();
}

LinkRelay::LinkRelay(const LinkConfig& config) : impl_(std::make_unique<Impl>(config)) {
  check_number(config.delay_ms, 0, "--delay-ms");
  check_number(config.jitter_ms, 0, "--jitter-ms");
  check_number(config.bandwidth_bps, 0, "--bandwidth-bps");
  check_number(config.cut_after_s, 0, "--cut-after-s");
  HostPort listen, to;
  try {
    listen = parse_host_port(config.listen, true);
  } catch (const std::invalid_argument& e) {
    throw LinkError(fmt::format("--listen: {}", e.what()));
  }
  try {
    to = parse_host_port(config.to);
  } catch (const std::invalid_argument& e) {
    throw LinkError(fmt::format("--to: {}", e.what()));
  }
  asio::error_code ec;
  tcp::resolver resolver(impl_->io);
  impl_->upstream = resolver.resolve(to.host, std::to_string(to.port), ec);
  if (ec) throw LinkError(fmt::format("--to {}: cannot resolve: {}", config.to, ec.message()));
  const auto listen_at = resolver.resolve(listen.host, std::to_string(listen.port), ec);
  if (ec || listen_at.empty())
    throw LinkError(fmt::format("--listen {}: cannot resolve: {}", config.listen, ec.message()));
  const tcp::endpoint endpoint = listen_at.begin()->endpoint();
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl_->bound = acceptor.local_endpoint(ec);
  if (ec) throw LinkError(fmt::format("--listen {}: {}", config.listen, ec.message()));
  // A relay to itself accepts its own connection, connects again, and so on until it runs out of
  // file descriptors (a listen port of 0 can even be given the upstream's port when nothing holds it).
  const auto& bound = impl_->bound;
  for (const auto& entry : impl_->upstream) {
    const tcp::endpoint& target = entry.endpoint();
    const bool same_host =
        target.address() == bound.address() || (bound.address().is_unspecified() && target.address().is_loopback());
    if (target.port() == bound.port() && same_host) {
      acceptor.close(ec);
      throw LinkError(fmt::format("--to {} is this relay's own --listen address ({}): it would relay to itself",
                                  config.to, HostPort{bound.address().to_string(), bound.port()}.to_string()));
    }
  }
}

LinkRelay::~LinkRelay() { stop(); }

void LinkRelay::start() {
  Impl& impl = *impl_;
  if (impl.thread.joinable() || impl.stopped) return;
  impl.accept();
  if (impl.config.cut_after_s > 0) {
    impl.cut_timer.expires_after(seconds(impl.config.cut_after_s));
    impl.cut_timer.async_wait([&impl](std::error_code ec) {
      if (ec) return;
      fmt::print(stderr, "link: cut after {:g} s: closing every connection\n", impl.config.cut_after_s);
      impl.close_all();
    });
  }
  impl.thread = std::thread([&impl] { impl.io.run(); });
}

void LinkRelay::stop() {
  Impl& impl = *impl_;
  if (impl.stopped) return;
  impl.stopped = true;
  if (impl.thread.joinable()) {
    asio::post(impl.io, [&impl] {
      impl.close_all();
      impl.io.stop();  // handlers still queued are destroyed with the io_context
    });
    impl.thread.join();
  } else {
    impl.close_all();
  }
}

uint16_t LinkRelay::port() const { return impl_->bound.port(); }

std::string LinkRelay::address() const {
  return HostPort{impl_->bound.address().to_string(), impl_->bound.port()}.to_string();
}

const LinkConfig& LinkRelay::config() const { return impl_->config; }
uint64_t LinkRelay::connections_accepted() const { return impl_->accepted.load(); }

int run_link(const LinkConfig& config) {
  // Blocked before the relay's thread starts (it inherits the mask), so only sigwait gets them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  LinkRelay relay(config);
  relay.start();
  fmt::print("link: listening on {} -> {}, delay {:g} ms, jitter {:g} ms (seed {}), bandwidth {}, cut {}\n",
             relay.address(), config.to, config.delay_ms, config.jitter_ms, config.seed,
             config.bandwidth_bps > 0 ? fmt::format("{:g} bit/s", config.bandwidth_bps) : "unlimited",
             config.cut_after_s > 0 ? fmt::format("after {:g} s", config.cut_after_s) : "never");
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  fmt::print(stderr, "link: stopping on signal {}\n", signal);
  relay.stop();
  return 0;
}

}  // namespace bouquet::net

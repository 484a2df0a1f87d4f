// `bouquet link`: a TCP relay that behaves like a consumer link between two processes on one
// machine (these machines have no `tc netem`). It forwards bytes and knows nothing of what they
// mean. A test and benchmark tool: production paths never go through it.
//
// Promises, per direction of each accepted connection: the direction is a FIFO queue; a chunk read
// at time t leaves at max(t + delay + jitter, when the previous chunk finished leaving) +
// bytes / bandwidth, which is a real link's propagation delay and serialisation rate. Jitter is
// uniform in [0, jitter_ms] per chunk, drawn from the seeded generator; it never reorders bytes.
// A half-close travels like the bytes before it. An upstream that refuses the connection or
// resets it closes that client's connection; the relay keeps accepting others. With cut_after_s,
// that many seconds after start() every connection is closed on both sides and the listening
// socket too: the link is down for good (new connections are refused).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace bouquet::net {

// A bad setting, named by its flag: "--delay-ms: ...".
class LinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LinkConfig {
  std::string listen = "127.0.0.1:0";  // port 0: any free port
  std::string to;                      // upstream HOST:PORT
  double delay_ms = 0;                 // one way
  double jitter_ms = 0;                // extra delay per chunk, uniform in [0, jitter_ms]
  double bandwidth_bps = 0;            // bits per second, each direction; 0: unlimited
  double cut_after_s = 0;              // 0: never
  uint64_t seed = 0;                   // of the jitter
};

class LinkRelay {
 public:
  // Checks the config, resolves `to` and binds `listen`; throws LinkError naming the flag.
  explicit LinkRelay(const LinkConfig& config);
  ~LinkRelay();  // stop()
  LinkRelay(const LinkRelay&) = delete;
  LinkRelay& operator=(const LinkRelay&) = delete;

  // Accepts and relays on a background thread until stop() (or the cut).
  void start();
  // Closes every connection and the listening socket and joins the thread. Idempotent.
  void stop();

  uint16_t port() const;
  std::string address() const;  // the bound HOST:PORT
  const LinkConfig& config() const;
  uint64_t connections_accepted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs a relay until SIGINT/SIGTERM, printing its address and settings first. Exit status.
int run_link(const LinkConfig& config);

}  // namespace bouquet::net

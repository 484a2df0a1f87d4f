// A TCP relay in front of one server that counts the StepRequests clients send through it and,
// when the count reaches a number, runs a callback before passing that request on. The recovery
// tests use it to SIGKILL a server at an exact step of a generation, from outside the server,
// without racing the client's speed.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bouquet::net::testing {

class StepTap {
 public:
  // Listens on 127.0.0.1:0 and relays every connection to `upstream` ("HOST:PORT").
  // `on_step` runs once, on the relay thread, when the `at_step`-th StepRequest has arrived and
  // before its bytes are passed on.
  StepTap(std::string upstream, uint64_t at_step, std::function<void()> on_step);
  ~StepTap();
  StepTap(const StepTap&) = delete;
  StepTap& operator=(const StepTap&) = delete;

  const std::string& address() const { return address_; }
  uint64_t steps_seen() const { return steps_; }

 private:
  void accept_loop();
  void pump(int from, int to, bool count_steps);

  std::string upstream_;
  uint64_t at_step_;
  std::function<void()> on_step_;
  int listen_fd_ = -1;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> steps_{0};
  std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace bouquet::net::testing

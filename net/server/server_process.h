// A `bouquet serve` child process, for the benchmark and the multi-process tests: started with
// its flags, ready once it printed "listening on HOST:PORT" (the address is parsed from that
// line), and stopped (SIGTERM, then SIGKILL after a grace period) when the object goes away, so
// no server outlives the run that started it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace bouquet::net {

class ServerProcess {
 public:
  // Runs `binary serve <args...>` and waits up to `ready_timeout_s` for its listening line.
  // Throws std::runtime_error (with the reason: exited, timed out) otherwise.
  ServerProcess(const std::string& binary, const std::vector<std::string>& args, double ready_timeout_s = 120);
  ~ServerProcess();
  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ServerProcess(const ServerProcess&) = delete;

  const std::string& address() const { return address_; }  // "HOST:PORT"
  pid_t pid() const { return pid_; }
  bool running();
  // SIGKILL now, and reap.
  void kill_now();
  // SIGTERM, wait up to grace_s, then SIGKILL; returns the exit status (or 128 + signal).
  int stop(double grace_s = 5);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string address_;
};

// The running program's own binary (/proc/self/exe), to start servers of the same build.
std::string current_binary();

}  // namespace bouquet::net

#include "sim/isolated_run.h"

#include <fmt/core.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include <sys/wait.h>
#include <unistd.h>

namespace bouquet::sim {
namespace {

// One status byte, then the body's text or the error message.
constexpr char kOk = 'o';
constexpr char kFailed = 'e';

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

std::string read_all(int fd) {
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

std::string run_isolated(const std::function<std::string()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) throw SimulationError(fmt::format("pipe: {}", std::strerror(errno)));
  std::fflush(nullptr);  // buffered output would otherwise be written twice
  pid_t pid = ::fork();
  if (pid < 0) throw SimulationError(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::close(fds[0]);
    std::string reply;
    try {
      reply = kOk + body();
    } catch (const std::exception& e) {
      reply = kFailed + std::string(e.what());
    } catch (...) {
      reply = kFailed + std::string("unknown exception");
    }
    write_all(fds[1], reply);
    ::close(fds[1]);
    std::fflush(nullptr);
    ::_exit(0);  // skip the parent's atexit handlers and static destructors
  }
  ::close(fds[1]);
  std::string reply = read_all(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    throw SimulationError(
        fmt::format("the simulation died of signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status))));
  }
  if (reply.empty()) throw SimulationError("the simulation ended without a result");
  if (reply[0] == kFailed) throw SimulationError(reply.substr(1));
  return reply.substr(1);
}

}  // namespace bouquet::sim

#include "sim/sweep/worker_pool.h"

#include <fmt/core.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace bouquet::sim::sweep {
namespace {

double seconds_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void exec_child(const std::vector<char*>& argv, const char* log_path, pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(126);  // the sweep died before prctl took effect
  const int log = ::open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int null = ::open("/dev/null", O_RDONLY);
  if (log < 0 || null < 0) ::_exit(126);
  ::dup2(null, 0);
  ::dup2(log, 1);
  ::dup2(log, 2);
  ::execv(argv[0], argv.data());
  const char* message = "sweep: cannot execute the worker\n";
  (void)!::write(2, message, std::strlen(message));
  ::_exit(127);
}

}  // namespace

WorkerPool::~WorkerPool() { kill_all(); }

void WorkerPool::start(size_t tag, const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> raw;
  for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
  raw.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) exec_child(raw, log_path.c_str(), parent);
  ::setpgid(pid, pid);  // also here, so a kill of the group cannot race the child's own call
  workers_.push_back({pid, tag, std::chrono::steady_clock::now(), false});
}

std::optional<WorkerExit> WorkerPool::reap_one() {
  for (size_t i = 0; i < workers_.size(); ++i) {
    int status = 0;
    const pid_t done = ::waitpid(workers_[i].pid, &status, WNOHANG);
    if (done != workers_[i].pid) continue;
    WorkerExit exit;
    exit.tag = workers_[i].tag;
    exit.wall_s = seconds_since(workers_[i].started);
    exit.timed_out = workers_[i].killed;
    if (WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
    // The worker's own children (its simulation) go with it.
    ::kill(-workers_[i].pid, SIGKILL);
    workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
    return exit;
  }
  return std::nullopt;
}

void WorkerPool::enforce_timeouts() {
  if (timeout_s_ <= 0) return;
  for (auto& w : workers_) {
    if (!w.killed && seconds_since(w.started) > timeout_s_) {
      ::kill(-w.pid, SIGKILL);
      w.killed = true;
    }
  }
}

std::optional<WorkerExit> WorkerPool::wait_one(double max_wait_s) {
  const auto since = std::chrono::steady_clock::now();
  for (;;) {
    enforce_timeouts();
    if (auto exit = reap_one()) return exit;
    if (workers_.empty() || seconds_since(since) >= max_wait_s) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void WorkerPool::kill_all() {
  for (const auto& w : workers_) ::kill(-w.pid, SIGKILL);
  for (const auto& w : workers_) {
    int status = 0;
    while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  workers_.clear();
}

}  // namespace bouquet::sim::sweep

#include "net/server/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace bouquet::net {
namespace {

constexpr std::string_view kListening = "listening on ";

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string current_binary() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

ServerProcess::ServerProcess(const std::string& binary, const std::vector<std::string>& args, double ready_timeout_s) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe() failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  std::vector<std::string> argv_strings{binary, "serve"};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  stdout_fd_ = pipe_fds[0];
  if (rc != 0) {
    close(stdout_fd_);
    throw std::runtime_error(fmt::format("cannot start {}: error {}", binary, rc));
  }
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(ready_timeout_s);
  while (true) {
    const size_t line_end = seen.find('\n');
    if (line_end != std::string::npos) {
      const std::string line = seen.substr(0, line_end);
      seen.erase(0, line_end + 1);
      if (line.rfind(kListening, 0) == 0) {
        address_ = line.substr(kListening.size());
        return;
      }
      continue;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill_now();
      throw std::runtime_error(
          fmt::format("bouquet serve did not print its listening line within {} s", ready_timeout_s));
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000))) <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
    if (n <= 0) {
      const int status = stop(0);
      throw std::runtime_error(fmt::format("bouquet serve exited (status {}) before listening", status));
    }
    seen.append(buffer, static_cast<size_t>(n));
  }
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(other.pid_), stdout_fd_(other.stdout_fd_), address_(std::move(other.address_)) {
  other.pid_ = -1;
  other.stdout_fd_ = -1;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) stop();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void ServerProcess::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int ServerProcess::stop(double grace_s) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  int status = 0;
  while (true) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  return exit_status(status);
}

}  // namespace bouquet::net

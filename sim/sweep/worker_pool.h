// Runs commands in worker processes, a bounded number at a time. Each worker is exec'd in its own
// process group with its output going to a log file, dies with the sweep (PR_SET_PDEATHSIG), and
// is killed with its whole group (the simulation it forks included) when it outlives its time
// limit or when the pool is told to stop.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace bouquet::sim::sweep {

struct WorkerExit {
  size_t tag = 0;          // what the caller started it with
  int exit_code = -1;      // when it exited
  int signal = 0;          // when a signal ended it
  bool timed_out = false;  // killed by the pool for outliving its limit
  double wall_s = 0;
};

class WorkerPool {
 public:
  // timeout_s 0: no limit.
  explicit WorkerPool(double timeout_s) : timeout_s_(timeout_s) {}
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Starts argv[0] (a path) with `argv`, standard output and error to `log_path`.
  void start(size_t tag, const std::vector<std::string>& argv, const std::string& log_path);
  // The next worker to end, waiting at most `max_wait_s`; nothing if none ended by then.
  std::optional<WorkerExit> wait_one(double max_wait_s);
  size_t running() const { return workers_.size(); }
  // Kills every worker's process group and reaps them.
  void kill_all();

 private:
  struct Worker {
    pid_t pid = 0;
    size_t tag = 0;
    std::chrono::steady_clock::time_point started;
    bool killed = false;
  };
  std::optional<WorkerExit> reap_one();
  void enforce_timeouts();

  double timeout_s_;
  std::vector<Worker> workers_;
};

}  // namespace bouquet::sim::sweep

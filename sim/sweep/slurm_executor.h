// Runs a sweep's runs as one Slurm job array (`bouquet sweep --executor slurm`). The sweep
// directory must be on a filesystem that the submitting machine and every compute node see at
// the same path (the usual shared home or scratch), and the bouquet binary too.
//
// The job array's batch script is written to DIR/slurm/sweep-<n>.sbatch: array task t runs its
// share of the runs one after another, each as `bouquet sim ... --out DIR/runs/<id>.json` with
// its output in DIR/runs/<id>.log, and leaves DIR/runs/<id>.exit ("<status> <wall seconds>",
// written last and atomically) so the follower knows the run ended and how. Task t's own log is
// DIR/slurm/task-<job>_<t>.log. The follower asks squeue whether the job still has tasks, and
// sacct (or scontrol, where accounting is off) how a task ended when a run left no .exit file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "sim/sweep/worker_pool.h"

namespace bouquet::sim::sweep {

struct SlurmOptions {
  std::string partition;     // "" = the cluster's default partition
  std::string time;          // per array task, Slurm's time format ("" = the partition's default)
  int64_t array_max = 0;     // array tasks running at once (sbatch --array=...%N); 0 = no limit
  int64_t tasks_max = 1000;  // runs beyond this many share tasks (Slurm's MaxArraySize is 1001)
  double poll_s = 2;         // how often the follower looks at the queue and the results
};

// One run as a task executes it.
struct SlurmRun {
  size_t tag = 0;                 // the caller's index, handed back with its exit
  std::vector<std::string> argv;  // argv[0] is an absolute path
  std::filesystem::path json;     // what the run writes with --out (removed before it starts)
  std::filesystem::path log;      // its standard output and error
  std::filesystem::path exit;     // "<status> <wall seconds>" once it ended
};

class SlurmExecutor {
 public:
  // `slurm_dir` holds the scripts and task logs; runs longer than `timeout_s` (0: no limit) are
  // killed like the local pool kills them.
  SlurmExecutor(SlurmOptions options, std::filesystem::path slurm_dir, std::string job_name, double timeout_s);

  // Writes the batch script for `runs` and submits it with sbatch. Throws std::runtime_error
  // with sbatch's own words when it refuses.
  void submit(std::vector<SlurmRun> runs);
  const std::string& job_id() const { return job_id_; }
  size_t tasks() const { return tasks_; }

  // True while the job has tasks pending or running (squeue). Throws when squeue keeps failing.
  bool active();
  size_t running_tasks() const { return running_; }  // as the last active() saw them
  void cancel();                                     // scancel the whole array

  // The run's exit, once its .exit file is there.
  std::optional<WorkerExit> exit_of(const SlurmRun& run) const;
  // For a run that left no .exit file once the job ended: why, with the task's state and log.
  std::string missing_result(const SlurmRun& run);

  const std::vector<SlurmRun>& runs() const { return runs_; }
  double poll_s() const { return options_.poll_s; }

 private:
  size_t task_of(size_t run_index) const { return run_index % tasks_; }
  std::filesystem::path task_log(size_t task) const;
  std::string task_state(size_t task);
  std::string script() const;

  SlurmOptions options_;
  std::filesystem::path dir_;
  std::string job_name_;
  double timeout_s_;
  std::vector<SlurmRun> runs_;
  size_t tasks_ = 0;
  std::string job_id_;
  int squeue_failures_ = 0;
  size_t running_ = 0;
};

// Reads "<status> <wall seconds>" as the local pool would have reported the run: status 124 from
// timeout(1) is the time limit, 128+N a death by signal N. Nothing if the file is absent or torn.
std::optional<WorkerExit> read_exit_file(const std::filesystem::path& path, size_t tag, bool has_timeout);

// Quotes `word` for bash: every byte kept as it is.
std::string shell_quote(const std::string& word);

}  // namespace bouquet::sim::sweep

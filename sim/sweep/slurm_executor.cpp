#include "sim/sweep/slurm_executor.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace bouquet::sim::sweep {
namespace fs = std::filesystem;
namespace {

struct ProgramResult {
  int status = -1;     // exit status; -1 when it could not be started or died of a signal
  std::string output;  // standard output and error together
};

// Runs a Slurm client program found on PATH and collects what it prints.
ProgramResult run_program(const std::vector<std::string>& argv) {
  std::vector<char*> raw;
  for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
  raw.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  ProgramResult result;
  if (rc != 0) {
    ::close(fds[0]);
    result.output =
        fmt::format("cannot run {}: {} (is Slurm's client installed and on PATH?)", argv[0], std::strerror(rc));
    return result;
  }
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fds[0], buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) result.output.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.status = WEXITSTATUS(status);
  return result;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  return text;
}

// `Key=value` from scontrol's one-line records.
std::string field(const std::string& record, const std::string& key) {
  const std::string needle = " " + key + "=";
  const std::string padded = " " + record;
  const size_t at = padded.find(needle);
  if (at == std::string::npos) return "";
  const size_t begin = at + needle.size();
  return padded.substr(begin, padded.find(' ', begin) - begin);
}

}  // namespace

std::string shell_quote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::optional<WorkerExit> read_exit_file(const fs::path& path, size_t tag, bool has_timeout) {
  std::ifstream in(path);
  int status = 0;
  double wall_s = 0;
  if (!(in >> status >> wall_s)) return std::nullopt;
  WorkerExit exit;
  exit.tag = tag;
  exit.wall_s = wall_s;
  if (has_timeout && status == 124) {
    exit.timed_out = true;
  } else if (status > 128) {
    exit.signal = status - 128;
  } else {
    exit.exit_code = status;
  }
  return exit;
}

SlurmExecutor::SlurmExecutor(SlurmOptions options, fs::path slurm_dir, std::string job_name, double timeout_s)
    : options_(std::move(options)), dir_(std::move(slurm_dir)), job_name_(std::move(job_name)), timeout_s_(timeout_s) {}

fs::path SlurmExecutor::task_log(size_t task) const { return dir_ / fmt::format("task-{}_{}.log", job_id_, task); }

std::string SlurmExecutor::script() const {
  std::string s = "#!/bin/bash\n";
  s += "# Written by bouquet sweep: Slurm array task t runs its runs below one after another; each\n"
       "# leaves runs/<id>.json and .log, then runs/<id>.exit (\"<status> <wall seconds>\").\n";
  s += fmt::format("#SBATCH --job-name={}\n", job_name_);
  s += fmt::format("#SBATCH --array=0-{}{}\n", tasks_ - 1,
                   options_.array_max > 0 ? fmt::format("%{}", options_.array_max) : "");
  s += fmt::format("#SBATCH --output={}\n", (dir_ / "task-%A_%a.log").string());
  s += "#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n";
  if (!options_.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", options_.partition);
  if (!options_.time.empty()) s += fmt::format("#SBATCH --time={}\n", options_.time);
  s += "set -u\n"
       "run() {  # exit-file json-file log-file argv...\n"
       "  local exit_file=$1 json=$2 log=$3\n"
       "  shift 3\n"
       "  rm -f \"$json\" \"$exit_file\"\n"
       "  local start end status\n"
       "  start=$(date +%s.%N)\n";
  if (timeout_s_ > 0) {
    s += fmt::format("  timeout --kill-after=10 {} \"$@\" > \"$log\" 2>&1\n", timeout_s_);
  } else {
    s += "  \"$@\" > \"$log\" 2>&1\n";
  }
  s += "  status=$?\n"
       "  end=$(date +%s.%N)\n"
       "  awk -v s=\"$status\" -v a=\"$start\" -v b=\"$end\" 'BEGIN { printf \"%d %.3f\\n\", s, b - a }' "
       "> \"$exit_file.tmp\" && mv \"$exit_file.tmp\" \"$exit_file\"\n"
       "  echo \"run $(basename \"$json\" .json): status $status\"\n"
       "}\n"
       "case \"$SLURM_ARRAY_TASK_ID\" in\n";
  for (size_t task = 0; task < tasks_; ++task) {
    s += fmt::format("  {})\n", task);
    for (size_t i = task; i < runs_.size(); i += tasks_) {
      const SlurmRun& run = runs_[i];
      std::string line = fmt::format("    run {} {} {}", shell_quote(run.exit.string()), shell_quote(run.json.string()),
                                     shell_quote(run.log.string()));
      for (const auto& a : run.argv) line += " " + shell_quote(a);
      s += line + "\n";
    }
    s += "    ;;\n";
  }
  s += "  *) echo \"no runs for array task $SLURM_ARRAY_TASK_ID\"; exit 2 ;;\nesac\n";
  return s;
}

void SlurmExecutor::submit(std::vector<SlurmRun> runs) {
  if (runs.empty()) throw std::logic_error("SlurmExecutor::submit: no runs");
  runs_ = std::move(runs);
  tasks_ = std::min(runs_.size(), static_cast<size_t>(std::max<int64_t>(1, options_.tasks_max)));
  fs::create_directories(dir_);
  size_t number = 1;
  while (fs::exists(dir_ / fmt::format("sweep-{}.sbatch", number))) ++number;
  const fs::path path = dir_ / fmt::format("sweep-{}.sbatch", number);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << script();
    if (!out.flush()) throw std::runtime_error(fmt::format("{}: cannot write", path.string()));
  }
  for (const auto& run : runs_) {
    fs::remove(run.exit);
    fs::remove(run.json);
  }
  const ProgramResult r = run_program({"sbatch", "--parsable", path.string()});
  const std::string words = trimmed(r.output);
  if (r.status != 0 || words.empty()) {
    throw std::runtime_error(fmt::format("sbatch refused {}: {}", path.string(), words.empty() ? "no job id" : words));
  }
  // --parsable prints "jobid" or "jobid;cluster"; warnings may come on earlier lines.
  std::string last = words.substr(words.find_last_of('\n') == std::string::npos ? 0 : words.find_last_of('\n') + 1);
  job_id_ = last.substr(0, last.find(';'));
  if (job_id_.empty() || !std::all_of(job_id_.begin(), job_id_.end(), ::isdigit)) {
    throw std::runtime_error(fmt::format("sbatch answered '{}', not a job id", words));
  }
}

bool SlurmExecutor::active() {
  const ProgramResult r = run_program({"squeue", "--noheader", "--jobs", job_id_, "--format", "%i %T"});
  if (r.status == 0) {
    squeue_failures_ = 0;
    running_ = 0;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) running_ += line.find("RUNNING") != std::string::npos;
    return !trimmed(r.output).empty();
  }
  // squeue forgets a finished job after a while and then says "Invalid job id".
  if (r.output.find("Invalid job id") != std::string::npos) return false;
  if (++squeue_failures_ >= 15) {
    throw std::runtime_error(
        fmt::format("squeue keeps failing ({}); job {} may still run: follow it with "
                    "`bouquet sweep ... --resume` once the controller answers",
                    trimmed(r.output), job_id_));
  }
  return true;
}

void SlurmExecutor::cancel() { run_program({"scancel", job_id_}); }

std::optional<WorkerExit> SlurmExecutor::exit_of(const SlurmRun& run) const {
  return read_exit_file(run.exit, run.tag, timeout_s_ > 0);
}

std::string SlurmExecutor::task_state(size_t task) {
  const std::string id = fmt::format("{}_{}", job_id_, task);
  const ProgramResult acct =
      run_program({"sacct", "--noheader", "--parsable2", "--jobs", id, "--format", "State,ExitCode"});
  if (acct.status == 0 && !trimmed(acct.output).empty()) {
    std::string first = trimmed(acct.output);
    first = first.substr(0, first.find('\n'));
    const size_t bar = first.find('|');
    return fmt::format("{} (exit {})", first.substr(0, bar), bar == std::string::npos ? "?" : first.substr(bar + 1));
  }
  // Without accounting, the controller still remembers recent jobs (MinJobAge).
  const ProgramResult job = run_program({"scontrol", "--oneliner", "show", "job", id});
  if (job.status == 0) {
    const std::string state = field(job.output, "JobState");
    if (!state.empty()) return fmt::format("{} (exit {})", state, field(job.output, "ExitCode"));
  }
  return "in an unknown state (neither sacct nor scontrol knows it any more)";
}

std::string SlurmExecutor::missing_result(const SlurmRun& run) {
  const size_t index = static_cast<size_t>(&run - runs_.data());
  const size_t task = task_of(index);
  return fmt::format("no result: Slurm task {}_{} ended {}; see {}", job_id_, task, task_state(task),
                     task_log(task).string());
}

}  // namespace bouquet::sim::sweep

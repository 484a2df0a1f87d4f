#include "sim/sweep/sweep_command.h"

#include "sim/sweep/aggregate.h"
#include "sim/sweep/experiment.h"
#include "sim/sweep/metrics.h"
#include "sim/sweep/progress.h"
#include "sim/sweep/report.h"
#include "sim/sweep/run_table.h"
#include "sim/sweep/slurm_executor.h"
#include "sim/sweep/worker_pool.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace bouquet::sim::sweep {
namespace fs = std::filesystem;
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

void on_stop_signal(int signal) { g_stop_signal = signal; }

// Installs the stop handlers for the sweep's lifetime and restores the previous ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &action, &previous_[i]);
  }
  ~StopSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &previous_[i], nullptr);
  }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> previous_{};
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !(out << text) || !out.flush()) throw std::runtime_error(fmt::format("{}: cannot write", path.string()));
}

std::string self_executable() {
  std::error_code error;
  fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (error) throw std::runtime_error("cannot find this executable (/proc/self/exe); pass --binary");
  return self.string();
}

// The last line the worker printed that says something, without bouquet's own prefix.
std::string last_words(const fs::path& log) {
  std::istringstream lines(read_text(log));
  std::string line;
  std::string last;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  }
  constexpr std::string_view kPrefix = "bouquet: error: ";
  if (last.starts_with(kPrefix)) last = last.substr(kPrefix.size());
  return last;
}

// Makes `out` ready: fresh, or (resume) checked to hold this experiment's runs.
void prepare_directory(const SweepCommandConfig& config, const Experiment& e) {
  const fs::path out(config.out);
  const fs::path runs_csv = out / "runs.csv";
  const std::string scenario_text = read_text(e.scenario_path);
  if (!config.resume && fs::exists(runs_csv)) {
    throw std::runtime_error(
        fmt::format("{} already holds a sweep: pass --resume to continue it, or choose another --out", config.out));
  }
  if (config.resume && fs::exists(out / "scenario.yaml") && read_text(out / "scenario.yaml") != scenario_text) {
    throw std::runtime_error(
        fmt::format("{} changed since the runs in {} (see its scenario.yaml): "
                    "their rows would not be comparable; use another --out",
                    e.scenario_path, config.out));
  }
  fs::create_directories(out / "runs");
  write_text(out / "experiment.yaml", read_text(config.experiment));
  write_text(out / "scenario.yaml", scenario_text);
}

class Sweep {
 public:
  Sweep(const SweepCommandConfig& config, Experiment experiment)
      : config_(config),
        e_(std::move(experiment)),
        points_(expand_points(e_)),
        runs_(expand_runs(e_, points_)),
        out_(config.out),
        runs_csv_((out_ / "runs.csv").string()),
        binary_(config.binary.empty() ? self_executable() : config.binary),
        scenario_abs_(fs::absolute(e_.scenario_path).string()) {}

  int run() {
    load_recorded();
    std::vector<size_t> pending;
    for (size_t i = 0; i < runs_.size(); ++i) {
      if (!recorded_.count(runs_[i].id)) pending.push_back(i);
    }
    Progress progress(runs_.size(), runs_.size() - pending.size(), stderr);
    StopSignals signals;
    if (config_.executor == "slurm") return run_on_slurm(pending, progress);
    const size_t jobs =
        config_.jobs > 0 ? static_cast<size_t>(config_.jobs) : std::max(1u, std::thread::hardware_concurrency());
    WorkerPool pool(e_.timeout_s);
    size_t next = 0;
    while (next < pending.size() || pool.running() > 0) {
      if (g_stop_signal) {
        pool.kill_all();
        progress.finish();
        fmt::print(stderr, "sweep: stopped by signal {}; the finished runs are in {}: continue with --resume\n",
                   static_cast<int>(g_stop_signal), runs_csv_);
        return 130;
      }
      while (pool.running() < jobs && next < pending.size()) start(pool, pending[next++]);
      if (auto exit = pool.wait_one(0.2)) record(finish(*exit), progress);
      progress.tick(pool.running());
    }
    progress.finish();
    conclude();
    return 0;
  }

 private:
  void load_recorded() {
    if (!fs::exists(runs_csv_)) return;
    std::vector<RunRow> rows = read_run_table(runs_csv_, e_);
    bool dropped = false;
    for (auto& row : rows) {
      if (config_.retry_failed && !row.ok()) {
        dropped = true;
        continue;
      }
      std::string id = row.run_id;
      recorded_[id] = std::move(row);
    }
    if (dropped) write_run_table(runs_csv_, e_, ordered_rows());
  }

  void record(RunRow row, Progress& progress) {
    append_run_row(runs_csv_, e_, row);
    const auto it = std::find_if(runs_.begin(), runs_.end(), [&](const RunSpec& r) { return r.id == row.run_id; });
    progress.run_finished(it == runs_.end() ? row.run_id : describe(*it), row.ok(), row.wall_s);
    recorded_[row.run_id] = std::move(row);
  }

  // The pending runs as one Slurm job array, followed until each has a row.
  int run_on_slurm(const std::vector<size_t>& pending, Progress& progress) {
    SlurmExecutor slurm(config_.slurm, fs::absolute(out_ / "slurm"), "bouquet-sweep-" + e_.name, e_.timeout_s);
    std::vector<SlurmRun> runs;
    for (size_t index : pending) {
      const RunSpec& run = runs_[index];
      SlurmRun r{index, run_argv(run), fs::absolute(run_file(run, ".json")), fs::absolute(run_file(run, ".log")),
                 fs::absolute(run_file(run, ".exit"))};
      // A run that ended after an earlier follower stopped already has its result: keep it.
      if (auto exit = read_exit_file(r.exit, index, e_.timeout_s > 0)) {
        record(finish(*exit), progress);
        continue;
      }
      runs.push_back(std::move(r));
    }
    if (!runs.empty()) {
      slurm.submit(runs);
      fmt::print(stderr, "sweep: submitted {} runs as Slurm job {} ({} array tasks); task logs: {}/task-{}_*.log\n",
                 runs.size(), slurm.job_id(), slurm.tasks(), (out_ / "slurm").string(), slurm.job_id());
    }
    std::vector<bool> done(runs.size(), false);
    size_t left = runs.size();
    bool active = left > 0;
    while (left > 0) {
      for (size_t i = 0; i < runs.size(); ++i) {
        if (done[i]) continue;
        if (auto exit = slurm.exit_of(runs[i])) {
          record(finish(*exit), progress);
          done[i] = true;
          --left;
        } else if (!active) {  // the job is gone and this run left nothing
          record(failed_row(runs_[runs[i].tag], slurm.missing_result(slurm.runs()[i])), progress);
          done[i] = true;
          --left;
        }
      }
      if (left == 0) break;
      // Asked after looking at the results, so a run that ended just before its job left the
      // queue is read on the next pass rather than reported missing.
      active = slurm.active();
      for (double waited = 0; active && waited < slurm.poll_s() && !g_stop_signal; waited += 0.1) {
        progress.tick(slurm.running_tasks());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (g_stop_signal) {
        slurm.cancel();
        progress.finish();
        fmt::print(stderr,
                   "sweep: stopped by signal {}; cancelled Slurm job {}; the finished runs are in {}: "
                   "continue with --resume\n",
                   static_cast<int>(g_stop_signal), slurm.job_id(), runs_csv_);
        return 130;
      }
    }
    progress.finish();
    conclude();
    return 0;
  }

  std::string describe(const RunSpec& run) const {
    std::vector<std::string> parts;
    for (size_t a = 0; a < e_.grid.size(); ++a)
      parts.push_back(fmt::format("{}={}", e_.grid[a].name, points_[run.point].labels[a]));
    parts.push_back(fmt::format("seed={}", run.seed));
    return fmt::format("{}", fmt::join(parts, " "));
  }

  fs::path run_file(const RunSpec& run, const char* extension) const { return out_ / "runs" / (run.id + extension); }

  // The command line of one run: `bouquet sim` with the point's overrides and the run's seed.
  std::vector<std::string> run_argv(const RunSpec& run) const {
    std::vector<std::string> argv = {binary_, "sim", scenario_abs_, "--seed", std::to_string(run.seed)};
    for (const auto& o : points_[run.point].overrides) {
      argv.emplace_back("--set");
      argv.push_back(o);
    }
    argv.emplace_back("--out");
    argv.push_back(fs::absolute(run_file(run, ".json")).string());
    return argv;
  }

  void start(WorkerPool& pool, size_t index) {
    const RunSpec& run = runs_[index];
    fs::remove(run_file(run, ".json"));  // a stale one from an interrupted attempt is no result
    pool.start(index, run_argv(run), run_file(run, ".log").string());
  }

  RunRow failed_row(const RunSpec& run, std::string error) const {
    RunRow row;
    row.run_id = run.id;
    row.labels = points_[run.point].labels;
    row.seed = run.seed;
    row.metrics.assign(e_.metrics.size(), std::numeric_limits<double>::quiet_NaN());
    row.error = std::move(error);
    row.status = "failed";
    return row;
  }

  RunRow finish(const WorkerExit& exit) {
    const RunSpec& run = runs_[exit.tag];
    RunRow row = failed_row(run, "");
    row.wall_s = exit.wall_s;
    const fs::path log = run_file(run, ".log");
    if (exit.timed_out) {
      row.error = fmt::format("killed after the time limit of {} s", e_.timeout_s);
    } else if (exit.signal) {
      row.error = fmt::format("died of signal {} ({}): {}", exit.signal, strsignal(exit.signal), last_words(log));
    } else if (exit.exit_code != 0) {
      row.error = fmt::format("exit status {}: {}", exit.exit_code, last_words(log));
    } else {
      try {
        row.metrics = extract_metrics(read_text(run_file(run, ".json")), e_.metrics);
      } catch (const std::exception& error) {
        row.error = error.what();
      }
    }
    row.status = row.error.empty() ? "ok" : "failed";
    return row;
  }

  // Rows of the grid in grid order, then any of runs no longer in the grid (kept, not counted).
  std::vector<RunRow> ordered_rows() const {
    std::vector<RunRow> rows;
    std::set<std::string> in_grid;
    for (const RunSpec& run : runs_) {
      in_grid.insert(run.id);
      auto it = recorded_.find(run.id);
      if (it != recorded_.end()) rows.push_back(it->second);
    }
    for (const auto& [id, row] : recorded_) {
      if (!in_grid.count(id)) rows.push_back(row);
    }
    return rows;
  }

  void conclude() {
    const std::vector<RunRow> rows = ordered_rows();
    std::set<std::string> in_grid;
    for (const RunSpec& run : runs_) in_grid.insert(run.id);
    std::vector<RunRow> grid_rows;
    for (const auto& row : rows) {
      if (in_grid.count(row.run_id)) grid_rows.push_back(row);
    }
    if (grid_rows.size() < rows.size()) {
      fmt::print(stderr,
                 "sweep: {} rows of runs.csv belong to no point of this grid: kept there, left out of the "
                 "aggregate and report\n",
                 rows.size() - grid_rows.size());
    }
    write_run_table(runs_csv_, e_, rows);
    const std::vector<PointSummary> summaries = aggregate(e_, points_, grid_rows);
    write_aggregate_csv((out_ / "aggregate.csv").string(), e_, summaries);
    ReportInput input{e_,
                      points_,
                      summaries,
                      grid_rows,
                      fmt::format("bouquet sweep {} --out {}", config_.experiment, config_.out),
                      std::vector<bool>(e_.plots.size(), false),
                      ""};
    draw_plots(input);
    write_text(out_ / "report.md", render_report(input));
    fmt::print(stderr, "sweep: wrote {}\n", (out_ / "report.md").string());
  }

  std::string find_plot_script() const {
    if (!config_.plot_script.empty()) return config_.plot_script;
    const std::vector<fs::path> candidates = {
        fs::path(config_.experiment).parent_path() / "plot_sweep.py",
        fs::path(binary_).parent_path() / ".." / "experiments" / "plot_sweep.py",
        fs::path(binary_).parent_path() / ".." / ".." / "experiments" / "plot_sweep.py"};
    for (const auto& c : candidates) {
      if (fs::exists(c)) return c.lexically_normal().string();
    }
    return "";
  }

  void draw_plots(ReportInput& input) {
    if (!config_.plots) {
      input.plot_note = "--no-plots";
      return;
    }
    if (e_.plots.empty()) return;
    const std::string script = find_plot_script();
    if (script.empty()) {
      input.plot_note = "experiments/plot_sweep.py not found beside the experiment or the binary (--plot-script)";
      return;
    }
    write_text(out_ / "plots.json", plot_spec_json(e_));
    for (size_t p = 0; p < e_.plots.size(); ++p) fs::remove(out_ / plot_file_name(p, e_.plots[p]));
    WorkerPool pool(300);
    pool.start(0, {config_.python, script, fs::absolute(out_).string()}, (out_ / "plots.log").string());
    std::optional<WorkerExit> exit;
    while (!(exit = pool.wait_one(1.0)) && pool.running() > 0) {
    }
    if (!exit || exit->exit_code != 0) {
      input.plot_note = fmt::format("{} failed: {} (see plots.log)", script, last_words(out_ / "plots.log"));
      fmt::print(stderr, "sweep: {}\n", input.plot_note);
    }
    for (size_t p = 0; p < e_.plots.size(); ++p)
      input.plot_drawn[p] = fs::exists(out_ / plot_file_name(p, e_.plots[p]));
  }

  const SweepCommandConfig& config_;
  Experiment e_;
  std::vector<Point> points_;
  std::vector<RunSpec> runs_;
  fs::path out_;
  std::string runs_csv_;
  std::string binary_;
  std::string scenario_abs_;
  std::map<std::string, RunRow> recorded_;
};

}  // namespace

int run_sweep_command(const SweepCommandConfig& config) {
  Experiment experiment = load_experiment_file(config.experiment);
  fmt::print(stderr, "sweep: {} checked: {} points x {} seeds\n", config.experiment, expand_points(experiment).size(),
             experiment.seeds.size());
  prepare_directory(config, experiment);
  return Sweep(config, std::move(experiment)).run();
}

}  // namespace bouquet::sim::sweep

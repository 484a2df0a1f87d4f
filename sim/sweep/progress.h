// The sweep's progress on standard error: on a terminal, one bar redrawn in place
// ("[#####.....] 12/48 runs, 1 failed, 2 running, 1m02s elapsed, ~3m10s left"); otherwise one
// plain line per finished run, so logs stay readable. The time left extrapolates the wall time
// of the runs finished by this invocation (runs skipped by --resume do not count).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace bouquet::sim::sweep {

class Progress {
 public:
  // `total` runs, `done_before` of them recorded before this invocation.
  Progress(size_t total, size_t done_before, std::FILE* out);

  void run_finished(const std::string& what, bool ok, double wall_s);
  void tick(size_t running);  // redraws the bar (terminal only), at most a few times a second
  void finish();              // ends the bar's line

  std::string estimate_left() const;            // "~3m10s left", or "" before a run finished
  static std::string duration(double seconds);  // "45s", "3m10s", "2h05m"

 private:
  void draw(size_t running);

  size_t total_;
  size_t done_;
  size_t done_here_ = 0;
  size_t failed_ = 0;
  size_t running_ = 0;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace bouquet::sim::sweep

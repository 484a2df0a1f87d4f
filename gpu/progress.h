// Progress of long work on standard error, in the style people know from tqdm: on a terminal one
// line redrawn in place ("loading blocks [0, 10) [#######.........] 3/10 blocks, 120.3/400.0 MB,
// 55.1 MB/s, 2s elapsed, ~5s left"), at most a few times a second; otherwise plain log lines, one
// per tenth of the work and one at the end, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace bouquet::gpu {

struct ProgressConfig {
  std::string what;   // "loading blocks [0, 10)", "finetune"
  int64_t total = 0;  // units of work (blocks, steps)
  std::string unit;   // "blocks", "steps"
  std::FILE* out = stderr;
  int terminal = -1;  // -1: ask isatty(out); 0 / 1 force plain lines / redrawing
};

class Progress {
 public:
  explicit Progress(ProgressConfig config);
  ~Progress();  // ends the line on a terminal
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` units so far; `bytes`, when > 0, adds a size and a rate; `note` is appended ("loss 1.23").
  void update(int64_t done, uint64_t bytes = 0, const std::string& note = "");

  // The line as it is drawn for `done` units after `elapsed_s` (for tests and plain logs).
  std::string line(int64_t done, uint64_t bytes, const std::string& note, double elapsed_s) const;
  bool terminal() const { return terminal_; }

 private:
  ProgressConfig config_;
  bool terminal_;
  int64_t last_tenth_ = -1;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
};

// "45s", "3m10s", "2h05m".
std::string duration_text(double seconds);

}  // namespace bouquet::gpu

#include "sim/sweep/progress.h"

#include <fmt/core.h>

#include <cmath>

#include <unistd.h>

namespace bouquet::sim::sweep {
namespace {

constexpr int kBarWidth = 30;

double seconds_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

Progress::Progress(size_t total, size_t done_before, std::FILE* out)
    : total_(total),
      done_(done_before),
      out_(out),
      tty_(::isatty(::fileno(out)) != 0),
      started_(std::chrono::steady_clock::now()),
      last_draw_(started_) {
  if (!tty_) {
    fmt::print(out_, "sweep: {} runs, {} already recorded, {} to go\n", total_, done_, total_ - done_);
    std::fflush(out_);
  }
}

std::string Progress::duration(double seconds) {
  const auto s = static_cast<long>(std::lround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string Progress::estimate_left() const {
  if (done_here_ == 0) return "";
  // Runs finish in parallel: the rate this invocation achieved already accounts for the workers.
  const double per_run_s = seconds_since(started_) / static_cast<double>(done_here_);
  return fmt::format("~{} left", duration(per_run_s * static_cast<double>(total_ - done_)));
}

void Progress::run_finished(const std::string& what, bool ok, double wall_s) {
  ++done_;
  ++done_here_;
  if (!ok) ++failed_;
  if (tty_) {
    if (!ok) fmt::print(out_, "\r\x1b[Ksweep: failed: {}\n", what);
    draw(running_);
    return;
  }
  const std::string left = done_ < total_ ? ", " + estimate_left() : "";
  fmt::print(out_, "sweep: {}/{} done{}{}: {} {} in {:.1f} s\n", done_, total_,
             failed_ ? fmt::format(" ({} failed)", failed_) : "", left, ok ? "ok" : "FAILED", what, wall_s);
  std::fflush(out_);
}

void Progress::tick(size_t running) {
  running_ = running;
  if (!tty_ || seconds_since(last_draw_) < 0.25) return;
  draw(running);
}

void Progress::draw(size_t running) {
  last_draw_ = std::chrono::steady_clock::now();
  const int filled = total_ ? static_cast<int>(kBarWidth * done_ / total_) : kBarWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kBarWidth, '.');
  std::string left = estimate_left();
  fmt::print(out_, "\r\x1b[K[{}] {}/{} runs{}, {} running, {} elapsed{}", bar, done_, total_,
             failed_ ? fmt::format(", {} failed", failed_) : "", running, duration(seconds_since(started_)),
             left.empty() ? "" : ", " + left);
  std::fflush(out_);
}

void Progress::finish() {
  if (tty_) {
    draw(0);
    fmt::print(out_, "\n");
  }
  fmt::print(out_, "sweep: {} of {} runs recorded ({} failed) in {}\n", done_, total_, failed_,
             duration(seconds_since(started_)));
  std::fflush(out_);
}

}  // namespace bouquet::sim::sweep

#include "gpu/progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace bouquet::gpu {
namespace {

constexpr int kBarWidth = 24;

double seconds_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

std::string duration_text(double seconds) {
  const auto s = static_cast<long>(std::lround(std::max(0.0, seconds)));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

Progress::Progress(ProgressConfig config)
    : config_(std::move(config)),
      terminal_(config_.terminal < 0 ? ::isatty(::fileno(config_.out)) != 0 : config_.terminal != 0),
      started_(std::chrono::steady_clock::now()),
      last_draw_(started_) {}

Progress::~Progress() {
  if (terminal_ && drawn_) {
    std::fputc('\n', config_.out);
    std::fflush(config_.out);
  }
}

std::string Progress::line(int64_t done, uint64_t bytes, const std::string& note, double elapsed_s) const {
  const int64_t total = std::max<int64_t>(config_.total, 1);
  const auto filled = static_cast<size_t>(kBarWidth * std::clamp<int64_t>(done, 0, total) / total);
  std::string bar(filled, '#');
  bar.resize(kBarWidth, '.');
  std::string out = fmt::format("{} [{}] {}/{} {}", config_.what, bar, done, config_.total, config_.unit);
  if (bytes > 0) {
    out += fmt::format(", {:.1f} MB", static_cast<double>(bytes) / 1e6);
    if (elapsed_s > 0) out += fmt::format(", {:.1f} MB/s", static_cast<double>(bytes) / 1e6 / elapsed_s);
  } else if (done > 0 && elapsed_s > 0) {
    out += fmt::format(", {:.2f} {}/s", static_cast<double>(done) / elapsed_s, config_.unit);
  }
  out += fmt::format(", {} elapsed", duration_text(elapsed_s));
  if (done > 0 && done < config_.total) {
    out += fmt::format(
        ", ~{} left", duration_text(elapsed_s / static_cast<double>(done) * static_cast<double>(config_.total - done)));
  }
  if (!note.empty()) out += ", " + note;
  return out;
}

void Progress::update(int64_t done, uint64_t bytes, const std::string& note) {
  const double elapsed_s = seconds_since(started_);
  const bool last = done >= config_.total;
  if (terminal_) {
    if (!last && drawn_ && seconds_since(last_draw_) < 0.1) return;
    last_draw_ = std::chrono::steady_clock::now();
    drawn_ = true;
    fmt::print(config_.out, "\r\x1b[K{}", line(done, bytes, note, elapsed_s));
    std::fflush(config_.out);
    return;
  }
  // Plain logs: the first unit, each tenth of the work, and the end.
  const int64_t tenth = config_.total > 0 ? done * 10 / config_.total : 10;
  if (tenth == last_tenth_ && !last) return;
  if (last && last_tenth_ == 10) return;
  last_tenth_ = last ? 10 : tenth;
  fmt::print(config_.out, "{}\n", line(done, bytes, note, elapsed_s));
  std::fflush(config_.out);
}

}  // namespace bouquet::gpu

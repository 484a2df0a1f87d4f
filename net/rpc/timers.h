// The driver side of the core's timers on an Asio io_context: a table of one-shot timers keyed
// by the core's TimerId, and the wall clock the core's `now` comes from.
//
// Promises: set() (re)arms an id at an absolute time on the driver clock, replacing its previous
// deadline; cancel() disarms it; `fired` is called only for the deadline still armed, on the
// io_context's thread. A deadline of kNever arms nothing.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include "core/input.h"
#include "core/time.h"

namespace bouquet::net {

// Seconds on the steady clock since the clock was made: the `now` a driver feeds the core.
class DriverClock {
 public:
  DriverClock() : epoch_(std::chrono::steady_clock::now()) {}
  core::Time now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count(); }
  std::chrono::steady_clock::time_point at(core::Time t) const {
    return epoch_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(t));
  }

 private:
  std::chrono::steady_clock::time_point epoch_;
};

class TimerTable {
 public:
  TimerTable(asio::io_context& io, const DriverClock& clock, std::function<void(core::TimerId)> fired)
      : io_(io), clock_(clock), fired_(std::move(fired)) {}
  ~TimerTable() { cancel_all(); }
  TimerTable(const TimerTable&) = delete;
  TimerTable& operator=(const TimerTable&) = delete;

  void set(core::TimerId id, core::Time at);
  void cancel(core::TimerId id);
  void cancel_all();
  size_t armed() const { return timers_.size(); }

 private:
  struct Entry {
    std::unique_ptr<asio::steady_timer> timer;
    uint64_t generation = 0;
  };

  asio::io_context& io_;
  const DriverClock& clock_;
  std::function<void(core::TimerId)> fired_;
  std::map<core::TimerId, Entry> timers_;
  uint64_t generation_ = 0;
  // Shared with pending handlers so that a handler running after the table died does nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bouquet::net

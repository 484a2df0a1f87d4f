#include "net/rpc/timers.h"

#include <cmath>

namespace bouquet::net {

void TimerTable::set(core::TimerId id, core::Time at) {
  cancel(id);
  if (!std::isfinite(at)) return;
  Entry& entry = timers_[id];
  entry.timer = std::make_unique<asio::steady_timer>(io_);
  entry.generation = ++generation_;
  entry.timer->expires_at(clock_.at(at));
  entry.timer->async_wait(
      [this, alive = std::weak_ptr<bool>(alive_), id, generation = entry.generation](const asio::error_code& ec) {
        if (ec || alive.expired()) return;
        auto it = timers_.find(id);
        if (it == timers_.end() || it->second.generation != generation) return;
        timers_.erase(it);
        fired_(id);
      });
}

void TimerTable::cancel(core::TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  it->second.timer->cancel();
  timers_.erase(it);
}

void TimerTable::cancel_all() {
  for (auto& [id, entry] : timers_) entry.timer->cancel();
  timers_.clear();
}

}  // namespace bouquet::net

#include "core/cache_admission.h"

#include <algorithm>

#include "core/check.h"

namespace bouquet::core {

CacheAdmission::Outcome CacheAdmission::request(Ticket ticket, uint64_t tokens) {
  if (tokens > tokens_max_) return Outcome::never_fits;
  if (waiting_.empty() && tokens <= tokens_free()) {
    tokens_used_ += tokens;
    return Outcome::granted;
  }
  BOUQUET_CHECK(waiting_.empty() || ticket > waiting_.rbegin()->first, "CacheAdmission: tickets must increase");
  waiting_.emplace(ticket, tokens);
  return Outcome::waiting;
}

void CacheAdmission::release(uint64_t tokens) {
  BOUQUET_CHECK(tokens <= tokens_used_, "CacheAdmission: released more tokens than reserved");
  tokens_used_ -= tokens;
  grant_waiters();
}

bool CacheAdmission::cancel(Ticket ticket) {
  if (auto g = granted_.find(ticket); g != granted_.end()) {
    tokens_used_ -= g->second;
    granted_.erase(g);
    grant_waiters();
    return true;
  }
  auto it = waiting_.find(ticket);
  if (it == waiting_.end()) return false;
  const bool was_head = it == waiting_.begin();
  waiting_.erase(it);
  if (was_head) grant_waiters();
  return true;
}

std::vector<CacheAdmission::Ticket> CacheAdmission::take_granted() {
  std::vector<Ticket> out;
  out.reserve(granted_.size());
  for (Ticket t : granted_order_) {
    if (granted_.erase(t)) out.push_back(t);
  }
  granted_order_.clear();
  return out;
}

void CacheAdmission::grant_waiters() {
  while (!waiting_.empty() && waiting_.begin()->second <= tokens_free()) {
    const auto [ticket, tokens] = *waiting_.begin();
    waiting_.erase(waiting_.begin());
    tokens_used_ += tokens;
    granted_.emplace(ticket, tokens);
    granted_order_.push_back(ticket);
  }
}

}  // namespace bouquet::core

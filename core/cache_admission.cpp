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
  waiting_.push_back(Waiter{ticket, tokens});
  return Outcome::waiting;
}

void CacheAdmission::release(uint64_t tokens) {
  BOUQUET_CHECK(tokens <= tokens_used_, "CacheAdmission: released more tokens than reserved");
  tokens_used_ -= tokens;
  grant_waiters();
}

bool CacheAdmission::cancel(Ticket ticket) {
  auto it = std::find_if(waiting_.begin(), waiting_.end(),
                         [&](const Waiter& w) { return w.ticket == ticket; });
  if (it == waiting_.end()) return false;
  const bool was_head = it == waiting_.begin();
  waiting_.erase(it);
  if (was_head) grant_waiters();
  return true;
}

std::vector<CacheAdmission::Ticket> CacheAdmission::take_granted() {
  std::vector<Ticket> out;
  out.swap(granted_);
  return out;
}

void CacheAdmission::grant_waiters() {
  while (!waiting_.empty() && waiting_.front().tokens <= tokens_free()) {
    tokens_used_ += waiting_.front().tokens;
    granted_.push_back(waiting_.front().ticket);
    waiting_.pop_front();
  }
}

}  // namespace bouquet::core

#include "core/position_log.h"

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/positions.h"

namespace bouquet::core {

void PositionLog::put(uint32_t start, Activation hidden_states) {
  const uint32_t end = start + token_count(hidden_states);
  BOUQUET_CHECK(end > start, "PositionLog::put of no positions");
  // An entry starting before `start` that reaches into [start, end): keep its head (and its
  // tail, if it reaches past `end`).
  auto it = entries_.lower_bound(start);
  if (it != entries_.begin()) {
    auto before = std::prev(it);
    const uint32_t b_end = before->first + token_count(before->second);
    if (b_end > start) {
      Activation whole = before->second;
      before->second = slice_tokens(whole, 0, start - before->first);
      if (b_end > end) entries_.emplace(end, slice_tokens(whole, end - before->first, b_end - before->first));
    }
  }
  // Entries starting inside [start, end): drop them, keeping a tail that reaches past `end`.
  it = entries_.lower_bound(start);
  while (it != entries_.end() && it->first < end) {
    const uint32_t e_end = it->first + token_count(it->second);
    if (e_end > end) entries_.emplace(end, slice_tokens(it->second, end - it->first, e_end - it->first));
    it = entries_.erase(it);
  }
  entries_.emplace(start, std::move(hidden_states));
}

void PositionLog::truncate(uint32_t end) {
  entries_.erase(entries_.lower_bound(end), entries_.end());
  if (entries_.empty()) return;
  auto last = std::prev(entries_.end());
  if (last->first + token_count(last->second) > end) last->second = slice_tokens(last->second, 0, end - last->first);
}

uint32_t PositionLog::end() const {
  if (entries_.empty()) return 0;
  const auto& [start, a] = *entries_.rbegin();
  return start + token_count(a);
}

bool PositionLog::covers(uint32_t begin, uint32_t end) const {
  auto it = entries_.upper_bound(begin);
  if (it == entries_.begin()) return begin >= end;
  --it;
  uint32_t at = begin;
  for (; it != entries_.end() && at < end; ++it) {
    if (it->first > at) return false;
    at = std::max(at, it->first + token_count(it->second));
  }
  return at >= end;
}

Activation PositionLog::take(uint32_t begin, uint32_t end, uint32_t max_tokens) const {
  end = std::min<uint64_t>(end, uint64_t{begin} + max_tokens);
  BOUQUET_CHECK(begin < end && covers(begin, end), "PositionLog::take of positions it does not hold");
  auto it = std::prev(entries_.upper_bound(begin));
  std::vector<Activation> parts;
  for (uint32_t at = begin; at < end; ++it) {
    const uint32_t e_begin = it->first, e_end = e_begin + token_count(it->second);
    parts.push_back(slice_tokens(it->second, at - e_begin, std::min(end, e_end) - e_begin));
    at = std::min(end, e_end);
  }
  return concat_tokens(parts);
}

}  // namespace bouquet::core

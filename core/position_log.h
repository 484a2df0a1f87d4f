// What a client sent (or will send) to one hop, keyed by absolute position: the history a
// replacement server is replayed from, and the queue a step is cut into messages from.
//
// Promises: entries never overlap; put() replaces whatever covered its positions (cutting
// entries that straddle its edges), truncate() drops every position from there on (cutting the
// entry that straddles it), take() returns any covered range as one activation (positions.h:
// merged or sliced, exactly the values first sent). Entries are [batch, tokens, hidden].
#pragma once

#include <cstdint>
#include <map>

#include "core/activation.h"

namespace bouquet::core {

class PositionLog {
 public:
  void put(uint32_t start, Activation hidden_states);
  void truncate(uint32_t end);
  void clear() { entries_.clear(); }

  // One past the last position held (0 when empty).
  uint32_t end() const;
  // True when every position of [begin, end) is held.
  bool covers(uint32_t begin, uint32_t end) const;
  // Positions [begin, min(end, begin + max_tokens)) as one activation; they must be covered.
  Activation take(uint32_t begin, uint32_t end, uint32_t max_tokens) const;

  const std::map<uint32_t, Activation>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::map<uint32_t, Activation> entries_;
};

}  // namespace bouquet::core

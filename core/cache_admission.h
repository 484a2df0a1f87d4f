// A server's attention-cache budget, counted in tokens per block (every block of the server keeps
// one cache entry per token of every open session). A session reserves batch x max_length tokens
// when it opens and keeps them until it is released. A request that does not fit waits, in
// strict arrival order: a waiting request holds back later ones even if they would fit, so a
// large session cannot be starved by a stream of small ones. The owner decides deadlines (it
// cancels a waiter whose time ran out); this class only keeps the books. Every operation on one
// ticket costs O(log n) in the number of waiters, so a flood of queued opens stays cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace bouquet::core {

class CacheAdmission {
 public:
  using Ticket = uint64_t;
  enum class Outcome { granted, waiting, never_fits };

  explicit CacheAdmission(uint64_t tokens_max) : tokens_max_(tokens_max) {}

  // Reserve `tokens` for `ticket` now if it fits and nobody waits; else queue it, unless it
  // exceeds the whole budget (never_fits, nothing queued). Tickets must be unique and increase.
  Outcome request(Ticket ticket, uint64_t tokens);
  // Whether request(_, tokens) would be granted at once.
  bool would_grant(uint64_t tokens) const { return waiting_.empty() && tokens <= tokens_free(); }
  // Return tokens of a granted reservation. Waiters that now fit are granted, in order; collect
  // them with take_granted().
  void release(uint64_t tokens);
  // Withdraw a ticket that is waiting, or that was granted from the wait queue but not yet
  // collected by take_granted() (its tokens go back). Deadline passed, client gone: the caller
  // may cancel several tickets in a row, and one cancel may grant the next before it is
  // cancelled. Returns false if the ticket was neither. May grant the waiters behind it.
  bool cancel(Ticket ticket);
  // Tickets granted from the wait queue since the last call, in grant order.
  std::vector<Ticket> take_granted();

  uint64_t tokens_max() const { return tokens_max_; }
  uint64_t tokens_used() const { return tokens_used_; }
  uint64_t tokens_free() const { return tokens_max_ - tokens_used_; }
  size_t waiting() const { return waiting_.size(); }

 private:
  void grant_waiters();

  uint64_t tokens_max_;
  uint64_t tokens_used_ = 0;
  // Tickets are issued in increasing order, so the map's order is arrival order.
  std::map<Ticket, uint64_t> waiting_;  // ticket -> tokens
  std::map<Ticket, uint64_t> granted_;  // granted from the queue, not yet taken
  std::vector<Ticket> granted_order_;   // the same tickets in grant order (may hold cancelled ones)
};

}  // namespace bouquet::core

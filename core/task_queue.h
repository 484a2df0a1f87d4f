// A server's computations waiting for a compute slot, and which of them run together.
//
// - Inference steps go before forward and backward passes (an interactive user waits on each
//   step; fine-tuning batches can wait); tasks of the same priority run in arrival order.
// - Continuous batching: the next computation is the head of the queue plus every queued
//   inference step that can share one pass over the weights with it (can_batch: same blocks,
//   same adapter), in arrival order, while their rows (batch x new tokens, summed) stay within
//   the server's maximum batch. Decode steps of many sessions (one row each) then cost about one
//   read of the weights. A step with more rows than the maximum runs alone, and forward/backward
//   passes always run alone.
// - Chunked prefill: a server cuts a step of more rows than its chunk size (a prefill, a long
//   replay) into chunks of at most that many rows (chunk_tokens) and queues each chunk only when
//   the previous one is done, at the back: decode steps of other sessions queued meanwhile run
//   between two chunks (or join a chunk's pass when their rows fit), so a long prompt delays them
//   by one chunk's computation, not by the whole prefill.
// - Removal lets a server drop the queued step of a session that closed or whose client vanished.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "core/compute.h"
#include "core/time.h"

namespace bouquet::core {

// Rows one request adds to a batched pass: batch x new tokens.
uint64_t batch_rows(const ComputeRequest& request);
// Whether two inference steps can run in one pass over the weights.
bool can_batch(const ComputeRequest& a, const ComputeRequest& b);
// New tokens of each chunk of a step of batch x new_tokens rows, so that a chunk's rows stay
// within chunk_rows (one token at least): new_tokens itself when it fits or chunk_rows is 0.
uint32_t chunk_tokens(uint32_t batch, uint32_t new_tokens, uint64_t chunk_rows);
// The chunk size of a server whose config names none: its max_batch when it batches (a chunk then
// costs about one batched decode step), else 0, never split (one row per computation would make
// every prompt token a pass over the weights of its own).
uint32_t default_prefill_chunk(uint32_t max_batch);

class TaskQueue {
 public:
  void push(ComputeRequest request, Time queued_at = 0);
  // The next task to run, or nothing when empty.
  std::optional<ComputeRequest> pop();

  // What pop_batch(rows_max) would take now, without taking it.
  struct BatchPreview {
    size_t requests = 0;     // 0 when the queue is empty
    uint64_t rows = 0;       // summed over those requests
    bool batchable = false;  // the head is an inference step within rows_max (others could join)
    Time head_queued_at = 0;
  };
  BatchPreview preview_batch(uint64_t rows_max) const;
  // The head and every queued step that can join it within rows_max rows, in arrival order
  // (empty when the queue is empty). rows_max <= 1 never merges two requests.
  std::vector<ComputeRequest> pop_batch(uint64_t rows_max);

  // Removes a queued task; false when it is not queued (already popped or never pushed).
  bool remove(TaskId task_id);

  size_t size() const { return inference_.size() + training_.size(); }
  // Rows (batch_rows) of the queued inference steps.
  uint64_t inference_rows() const { return inference_rows_; }
  bool empty() const { return size() == 0; }

 private:
  struct Queued {
    ComputeRequest request;
    Time queued_at = 0;
  };
  // Indices into inference_ of the batch headed by inference_.front() (empty when it cannot merge).
  std::vector<size_t> batch_members(uint64_t rows_max, uint64_t* rows) const;

  std::deque<Queued> inference_;
  std::deque<Queued> training_;  // forward and backward, in arrival order
  uint64_t inference_rows_ = 0;
};

}  // namespace bouquet::core

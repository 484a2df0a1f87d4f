// A server's computations waiting for a compute slot. Inference steps go before forward and
// backward passes (an interactive user waits on each step; fine-tuning batches can wait), and
// tasks of the same priority run in arrival order. Removal lets a server drop the queued step of
// a session that closed or whose client vanished.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

#include "core/compute.h"

namespace bouquet::core {

class TaskQueue {
 public:
  void push(ComputeRequest request);
  // The next task to run, or nothing when empty.
  std::optional<ComputeRequest> pop();
  // Removes a queued task; false when it is not queued (already popped or never pushed).
  bool remove(TaskId task_id);

  size_t size() const { return inference_.size() + training_.size(); }
  bool empty() const { return size() == 0; }

 private:
  std::deque<ComputeRequest> inference_;
  std::deque<ComputeRequest> training_;  // forward and backward, in arrival order
};

}  // namespace bouquet::core

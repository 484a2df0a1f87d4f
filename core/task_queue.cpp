#include "core/task_queue.h"

#include <algorithm>

namespace bouquet::core {

void TaskQueue::push(ComputeRequest request) {
  auto& queue = request.kind == ComputeKind::inference ? inference_ : training_;
  queue.push_back(std::move(request));
}

std::optional<ComputeRequest> TaskQueue::pop() {
  for (auto* queue : {&inference_, &training_}) {
    if (!queue->empty()) {
      ComputeRequest next = std::move(queue->front());
      queue->pop_front();
      return next;
    }
  }
  return std::nullopt;
}

bool TaskQueue::remove(TaskId task_id) {
  for (auto* queue : {&inference_, &training_}) {
    auto it = std::find_if(queue->begin(), queue->end(), [&](const ComputeRequest& r) { return r.task_id == task_id; });
    if (it != queue->end()) {
      queue->erase(it);
      return true;
    }
  }
  return false;
}

}  // namespace bouquet::core

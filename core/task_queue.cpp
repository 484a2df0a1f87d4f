#include "core/task_queue.h"

#include <algorithm>

namespace bouquet::core {

uint64_t batch_rows(const ComputeRequest& request) { return uint64_t{request.batch} * request.new_tokens; }

bool can_batch(const ComputeRequest& a, const ComputeRequest& b) {
  return a.kind == ComputeKind::inference && b.kind == ComputeKind::inference && a.span == b.span &&
         a.adapter == b.adapter;
}

uint32_t chunk_tokens(uint32_t batch, uint32_t new_tokens, uint64_t chunk_rows) {
  if (chunk_rows == 0 || uint64_t{batch} * new_tokens <= chunk_rows) return new_tokens;
  return static_cast<uint32_t>(std::clamp<uint64_t>(chunk_rows / std::max<uint32_t>(batch, 1), 1, new_tokens));
}

uint32_t default_prefill_chunk(uint32_t max_batch) { return max_batch > 1 ? max_batch : 0; }

void TaskQueue::push(ComputeRequest request, Time queued_at) {
  auto& queue = request.kind == ComputeKind::inference ? inference_ : training_;
  if (request.kind == ComputeKind::inference) inference_rows_ += batch_rows(request);
  queue.push_back(Queued{std::move(request), queued_at});
}

std::optional<ComputeRequest> TaskQueue::pop() {
  for (auto* queue : {&inference_, &training_}) {
    if (!queue->empty()) {
      ComputeRequest next = std::move(queue->front().request);
      queue->pop_front();
      if (next.kind == ComputeKind::inference) inference_rows_ -= batch_rows(next);
      return next;
    }
  }
  return std::nullopt;
}

std::vector<size_t> TaskQueue::batch_members(uint64_t rows_max, uint64_t* rows) const {
  std::vector<size_t> members;
  *rows = 0;
  if (inference_.empty()) return members;
  const ComputeRequest& head = inference_.front().request;
  *rows = batch_rows(head);
  members.push_back(0);
  if (rows_max <= 1 || *rows > rows_max) return members;
  for (size_t i = 1; i < inference_.size() && *rows < rows_max; ++i) {
    const ComputeRequest& other = inference_[i].request;
    if (!can_batch(head, other) || *rows + batch_rows(other) > rows_max) continue;
    *rows += batch_rows(other);
    members.push_back(i);
  }
  return members;
}

TaskQueue::BatchPreview TaskQueue::preview_batch(uint64_t rows_max) const {
  BatchPreview preview;
  if (inference_.empty()) {
    if (training_.empty()) return preview;
    preview.requests = 1;
    preview.rows = batch_rows(training_.front().request);
    preview.head_queued_at = training_.front().queued_at;
    return preview;
  }
  const auto members = batch_members(rows_max, &preview.rows);
  preview.requests = members.size();
  preview.batchable = rows_max > 1 && batch_rows(inference_.front().request) <= rows_max;
  preview.head_queued_at = inference_.front().queued_at;
  return preview;
}

std::vector<ComputeRequest> TaskQueue::pop_batch(uint64_t rows_max) {
  std::vector<ComputeRequest> batch;
  if (inference_.empty()) {
    if (auto next = pop()) batch.push_back(std::move(*next));
    return batch;
  }
  uint64_t rows = 0;
  const auto members = batch_members(rows_max, &rows);
  for (size_t i : members) {
    inference_rows_ -= batch_rows(inference_[i].request);
    batch.push_back(std::move(inference_[i].request));
  }
  // Erase from the back so the indices still to erase stay valid.
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    inference_.erase(inference_.begin() + static_cast<std::ptrdiff_t>(*it));
  }
  return batch;
}

bool TaskQueue::remove(TaskId task_id) {
  for (auto* queue : {&inference_, &training_}) {
    auto it = std::find_if(queue->begin(), queue->end(), [&](const Queued& q) { return q.request.task_id == task_id; });
    if (it != queue->end()) {
      if (it->request.kind == ComputeKind::inference) inference_rows_ -= batch_rows(it->request);
      queue->erase(it);
      return true;
    }
  }
  return false;
}

}  // namespace bouquet::core

// How a client splits a forward or backward pass of many sequences into sub-batches that go
// through the chain concurrently: while one server computes a sub-batch, the next
// travels or is computed by another server, so a large batch pipelines through the swarm instead
// of crossing it in one piece. The reference system caps a request at 1024 positions.
//
// Promises: the sizes sum to `batch`, each holds whole sequences, at most
// max(1, max_tokens / sequence_tokens) of them, all full but the last; max_tokens 0 = no split.
#pragma once

#include <cstdint>
#include <vector>

namespace bouquet::core {

inline constexpr uint32_t kSubBatchTokensMax = 1024;

std::vector<uint32_t> split_batch(uint32_t batch, uint32_t sequence_tokens, uint32_t max_tokens);

}  // namespace bouquet::core

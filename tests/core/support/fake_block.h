// A deliberately simple stand-in for transformer blocks, for the virtual swarm. It is not a mock
// of the engine: it is a function chosen so that mistakes in caching and replay show up.
// Block b's output at position p of a sequence is a hash of b and of that block's inputs at
// every position 0..p (a prefix hash, like attention over the cache). So a missing, stale,
// duplicated or reordered cached position changes every later output, and a replay that feeds
// a different history gives a different result. All values are exact float32 (hash bits scaled
// by 2^-24), so results compare with ==.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "core/block_span.h"
#include "core/compute.h"

namespace bouquet::test {

// One session's caches on one server: per block, per sequence of the batch, the prefix hashes.
struct FakeCache {
  std::map<uint32_t, std::vector<std::vector<uint64_t>>> prefix;  // block -> row -> positions
};

// Runs `inputs` ([batch, tokens, hidden] floats, row-major) through `span`. With a cache, the
// cache is first truncated to `cache_length` positions (which it must have), then extended.
// Without one, the sequence starts at position 0.
std::vector<float> fake_span_forward(core::BlockSpan span, uint32_t batch, uint32_t tokens, uint32_t hidden,
                                     const std::vector<float>& inputs, FakeCache* cache, uint32_t cache_length);

// A fake gradient for backward, block by block like a real one: each block's input is recomputed
// forward from the span's inputs, and each block's gradient is a hash of the block, its input and
// the gradient of its output, row by row. So a span's backward equals the backward of its pieces
// in turn, whichever servers hold them, and a batch's equals its sub-batches'.
std::vector<float> fake_span_backward(core::BlockSpan span, uint32_t batch, uint32_t tokens, uint32_t hidden,
                                      const std::vector<float>& inputs, const std::vector<float>& grad_outputs);

// What a driver's compute does with a request (cache looked up by the caller for inference).
core::ComputeOutput fake_compute(const core::ComputeRequest& request, uint32_t hidden, FakeCache* cache);

// The client's side of a fake generation (stand-ins for embedding, LM head and sampling):
// the prompt's hidden states, and the next token's hidden states from the last output.
std::vector<float> fake_prompt(uint64_t seed, uint32_t batch, uint32_t tokens, uint32_t hidden);
std::vector<float> fake_next_input(const std::vector<float>& last_output, uint32_t batch, uint32_t tokens,
                                   uint32_t hidden);

}  // namespace bouquet::test

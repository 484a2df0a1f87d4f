// Cutting and joining hidden states along the positions axis ([batch, tokens, hidden], axis 1):
// what a client needs to replay a history in few messages, to split a step under the wire limits
// and to pick the new positions out of a longer reply.
//
// Promises: the values in a result are exactly what a receiver decoded from the parts as they
// travel (each part packed with its own compression, then unpacked), so a server fed a sliced or
// merged history computes on the very values it saw the first time. The result travels with the
// parts' compression when re-packing it reproduces those values bit for bit, else uncompressed.
// Handles without data (simulation) give handles without data of the right shape. A slice of all
// positions and a join of one part return the handle itself: the common path copies nothing.
// Shapes, dtypes and data presence must agree (programmer errors otherwise).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/activation.h"

namespace bouquet::core {

// shape[1] of a [batch, tokens, hidden] activation.
uint32_t token_count(const Activation& a);

// Positions [begin, end) of `a` (relative to its first position).
Activation slice_tokens(const Activation& a, uint32_t begin, uint32_t end);

// `a` cut into parts of part_tokens positions (the last one may be shorter), in order; the
// values are unpacked once for all parts.
std::vector<Activation> split_tokens(const Activation& a, uint32_t part_tokens);

// The parts one after another along the positions axis.
Activation concat_tokens(std::span<const Activation> parts);

// The same along any axis, for a pass's sub-batches (axis 0 of hidden states: sequences) and
// deep prompts ([blocks, batch, prefix, hidden]: axis 0 blocks, axis 1 sequences). Same promises.
Activation slice_axis(const Activation& a, size_t axis, uint32_t begin, uint32_t end);
Activation concat_axis(std::span<const Activation> parts, size_t axis);
// Elementwise sum of same-shaped parts (the gradient of prompts every sequence shares).
Activation sum_activations(std::span<const Activation> parts);

}  // namespace bouquet::core

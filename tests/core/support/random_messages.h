// Random but valid protocol messages of every type, with real activation data, for codec tests.
#pragma once

#include <vector>

#include "core/messages.h"
#include "core/rng.h"

namespace bouquet::test {

// A random activation of the given rank with host float data, random dtype and compression.
core::Activation random_activation(core::Rng& rng, size_t rank, uint32_t max_dim);
// One message of each MessageType (in MessageType order), fields drawn from `rng`; when
// `compression` is set every activation uses it.
std::vector<core::Message> random_messages(core::Rng& rng, std::optional<core::Compression> compression = {});

}  // namespace bouquet::test

// The scenario the sweep tests run: two pinned A100 servers splitting Llama-2-7B on one fast
// network and one client generating; small enough that a sweep of a few points takes seconds.
#pragma once

#include <string>
#include <string_view>

namespace bouquet::sim::testing {

// YAML text; `new_tokens` is the client's generation length, `extra` (whole lines) is appended.
std::string tiny_sweep_scenario(int new_tokens, std::string_view extra = {});

}  // namespace bouquet::sim::testing

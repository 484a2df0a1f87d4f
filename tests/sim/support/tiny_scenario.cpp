#include "tests/sim/support/tiny_scenario.h"

#include <fmt/core.h>

namespace bouquet::sim::testing {

std::string tiny_sweep_scenario(int new_tokens, std::string_view extra) {
  return fmt::format(R"(version: 1
name: tiny
description: two pinned servers and one client
seed: 1
duration_s: 600
network: {{model: CM02, why: a test}}
model: {{name: llama-2-7b, weights: f16}}
cost: {{efficiency: {{f16: 0.5}}, block_overhead_s: 0.0003, request_overhead_s: 0.001, client_efficiency: 0.7}}
regions:
  - {{name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}}
servers:
  - {{name: s0, gpu: a100-80gb, region: lab, blocks: [0, 16]}}
  - {{name: s1, gpu: a100-80gb, region: lab, blocks: [16, 32]}}
clients:
  - {{name: c, device: cpu-8core, region: lab, start_s: 1, work: {{kind: generate, new_tokens: {}}}}}
{})",
                     new_tokens, extra);
}

}  // namespace bouquet::sim::testing

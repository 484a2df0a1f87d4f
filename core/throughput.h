// The throughput a server announces: tokens per second it can push through each of its
// blocks, the smaller of what its compute and its network allow. Load balancing adds these up per
// block; forward/backward routing draws servers in proportion to them.
//
//   compute: a forward pass through n blocks runs at forward_rps / n tokens/s; a client uses on
//            average (n + 1) / 2 of a server's blocks, so the compute bound per block is
//            forward_rps / ((n + 1) / 2).
//   network: every token crosses the link as `hidden` activations, in and out, at 8 bytes each
//            (a float32 both ways): network_rps = bits per second / (hidden x 16).
#pragma once

#include <cstdint>

namespace bouquet::core {

// Tokens per second the link carries: network_bps / (hidden_size x 16).
double network_rps(double network_bps, uint32_t hidden_size);

// min(forward_rps / ((num_blocks + 1) / 2), network_rps(network_bps, hidden_size)).
double announced_throughput_rps(double forward_rps, uint32_t num_blocks, double network_bps, uint32_t hidden_size);

}  // namespace bouquet::core

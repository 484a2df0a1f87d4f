#include "core/throughput.h"

#include <algorithm>

#include "core/check.h"

namespace bouquet::core {

double network_rps(double network_bps, uint32_t hidden_size) {
  BOUQUET_CHECK(hidden_size > 0 && network_bps >= 0, "network_rps needs a hidden size and a bandwidth");
  return network_bps / (static_cast<double>(hidden_size) * 16.0);
}

double announced_throughput_rps(double forward_rps, uint32_t num_blocks, double network_bps, uint32_t hidden_size) {
  BOUQUET_CHECK(num_blocks > 0 && forward_rps >= 0, "a server announces throughput for at least one block");
  const double compute_rps = forward_rps / ((num_blocks + 1) / 2.0);
  return std::min(compute_rps, network_rps(network_bps, hidden_size));
}

}  // namespace bouquet::core

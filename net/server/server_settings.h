// What the flags of `bouquet serve` make of the core's configs: the checks that need no model,
// the speeds the server announces, its BlockServer's settings and its discovery settings. One
// place, so the first span and every later one (after a move) get the same.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/block_server.h"
#include "core/block_span.h"
#include "net/server/server.h"
#include "net/server/server_discovery.h"
#include "net/server/throughput_measure.h"

namespace bouquet::net {

class SpanCompute;

// Throws std::invalid_argument naming the flag for settings that are wrong whatever the model:
// --threads, connection limits, --blocks with --num-blocks, neither --blocks nor --initial-peers,
// discovery periods and speeds.
void check_serve_config(const ServeConfig& config);

struct AnnouncedSpeeds {
  double inference_rps = 0;   // one-token steps/s per block
  double forward_rps = 0;     // forward tokens/s per block
  double throughput_rps = 0;  // what balancing adds up: min of compute and network, or --throughput
};
// The speeds to announce for `blocks` blocks from what was measured, --inference-rps and
// --throughput winning where given; each decision is logged through `log`.
AnnouncedSpeeds announced_speeds(const ServeConfig& config, const MeasuredSpeed& measured, uint32_t blocks,
                                 uint32_t hidden_size, const std::function<void(const std::string&)>& log);

// The core's server for `serving`'s span, with the flags' limits and the announced speeds.
core::BlockServerConfig block_server_config(const ServeConfig& config, const std::string& model_id,
                                            const SpanCompute& serving, const AnnouncedSpeeds& speeds,
                                            const std::vector<std::string>& adapters);

// The model's name in the DHT: --model-name, else the folder's name.
std::string announced_model_name(const ServeConfig& config);

// The balancer and DHT settings of a server reachable at `address` (pinned to `pinned` when given),
// its peer id `identity`'s.
ServerDiscoveryConfig discovery_config(const ServeConfig& config, std::shared_ptr<const PeerIdentity> identity,
                                       const std::string& address, const std::string& model_id, uint32_t model_blocks,
                                       std::optional<core::BlockSpan> pinned, const AnnouncedSpeeds& speeds,
                                       const std::vector<std::string>& adapters);

}  // namespace bouquet::net

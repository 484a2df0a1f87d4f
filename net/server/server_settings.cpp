#include "net/server/server_settings.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "core/throughput.h"
#include "gpu/kernels/matvec.h"
#include "gpu/span_compute.h"
#include "net/dht/identity.h"
#include "net/rpc/address.h"

namespace bouquet::net {
namespace {

// Rows one batched step may merge when the user does not say. On a CPU, 8: `bench-block --batch`
// on a 7B-shaped block (1 thread) measured 8 sessions at 1.7x one session's step for bf16 and 2.3x
// for int8, and 16 at 3.6x and 6.1x (bf16 leaves the kernels past 8 rows, int8 turns
// compute-bound), so per session 16 costs more than 8. On a GPU, a batch still far from
// compute-bound for the models served.
uint32_t default_max_batch(const SpanCompute& serving) {
  if (serving.describe_compute().rfind("cpu", 0) == 0) return std::min<uint32_t>(8, gpu::kernels::kMatvecRowsMax);
  return 32;
}

}  // namespace

void check_serve_config(const ServeConfig& config) {
  if (config.threads < 0) throw std::invalid_argument("--threads must be >= 0");
  if (config.max_connections == 0) throw std::invalid_argument("--max-connections must be at least 1");
  if (!(config.idle_timeout_s >= 0) || !std::isfinite(config.idle_timeout_s)) {
    throw std::invalid_argument(
        fmt::format("--idle-timeout {}: must be finite seconds >= 0 (0 = never)", config.idle_timeout_s));
  }
  if (!(config.session_idle_contended_s >= 0) || !std::isfinite(config.session_idle_contended_s)) {
    throw std::invalid_argument(fmt::format("--session-idle-contended {}: must be finite seconds >= 0 (0 = off)",
                                            config.session_idle_contended_s));
  }
  const bool pinned = !config.blocks.empty();
  const bool discovering = !config.initial_peers.empty();
  if (!pinned && !discovering) {
    throw std::invalid_argument(
        "give --blocks A:B, or --initial-peers HOST:PORT,... to join a swarm and choose blocks");
  }
  if (pinned && config.num_blocks > 0) throw std::invalid_argument("give either --blocks or --num-blocks, not both");
  if (!discovering) return;
  if (!(config.update_period_s > 0)) throw std::invalid_argument("--update-period must be > 0 seconds");
  if (config.join_delay_s < 0 || config.balance_period_s <= 0) {
    throw std::invalid_argument("--join-delay must be >= 0 and --balance-period > 0 seconds");
  }
  if (config.balance_quality < 0 || config.balance_quality > 1) {
    throw std::invalid_argument("--balance-quality must be in [0, 1]");
  }
  if (config.network_bps < 0 || config.throughput < 0 || config.inference_rps < 0) {
    throw std::invalid_argument("--network-bps, --throughput and --inference-rps must be >= 0");
  }
}

AnnouncedSpeeds announced_speeds(const ServeConfig& config, const MeasuredSpeed& measured, uint32_t blocks,
                                 uint32_t hidden_size, const std::function<void(const std::string&)>& log) {
  AnnouncedSpeeds out;
  out.inference_rps = config.inference_rps > 0 ? config.inference_rps : measured.inference_rps;
  out.forward_rps = measured.forward_rps;
  if (config.inference_rps > 0) {
    log(fmt::format("inference {:.1f} steps/s per block announced (--inference-rps; measured {:.1f})",
                    out.inference_rps, measured.inference_rps));
  }
  const double network_bps = config.network_bps > 0 ? config.network_bps : 100e6;
  log(fmt::format("network {:.1f} Mbit/s ({})", network_bps / 1e6,
                  config.network_bps > 0 ? "--network-bps" : "default; set --network-bps"));
  if (config.throughput > 0) {
    out.throughput_rps = config.throughput;
    log(
        fmt::format("per block: {:.1f} inference steps/s, {:.0f} forward tokens/s ({}); throughput {:.1f} "
                    "tokens/s (--throughput)",
                    out.inference_rps, out.forward_rps, measured.source, out.throughput_rps));
  } else {
    out.throughput_rps = core::announced_throughput_rps(out.forward_rps, blocks, network_bps, hidden_size);
    log(
        fmt::format("per block: {:.1f} inference steps/s, {:.0f} forward tokens/s ({}); throughput {:.1f} "
                    "tokens/s for {} blocks (network allows {:.0f})",
                    out.inference_rps, out.forward_rps, measured.source, out.throughput_rps, blocks,
                    core::network_rps(network_bps, hidden_size)));
  }
  return out;
}

core::BlockServerConfig block_server_config(const ServeConfig& config, const std::string& model_id,
                                            const SpanCompute& serving, const AnnouncedSpeeds& speeds,
                                            const std::vector<std::string>& adapters) {
  core::BlockServerConfig server;
  server.model_id = model_id;
  server.span = serving.span();
  server.hidden_size = serving.hidden_size();
  server.cache_tokens = config.cache_tokens;
  server.session_idle_timeout_s = config.session_idle_timeout_s;
  server.inference_rps = speeds.inference_rps;
  server.forward_rps = speeds.forward_rps;
  server.throughput_rps = speeds.throughput_rps;
  server.adapters = adapters;
  server.request_tokens_max = config.request_tokens_max;
  server.client_cache_tokens_max = config.client_cache_tokens_max;
  server.client_opens_waiting_max = config.client_opens_waiting_max;
  server.client_tasks_queued_max = config.client_tasks_queued_max;
  server.tasks_queued_max = config.tasks_queued_max;
  server.session_idle_contended_s = config.session_idle_contended_s;
  server.max_batch = config.max_batch > 0 ? config.max_batch : default_max_batch(serving);
  server.batch_wait_s = config.batch_wait_ms / 1000.0;
  server.prefill_chunk = config.prefill_chunk;
  return server;
}

std::string announced_model_name(const ServeConfig& config) {
  if (!config.model_name.empty()) return config.model_name;
  std::string name = std::filesystem::path(config.model).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::absolute(config.model).parent_path().filename().string();
  return name;
}

ServerDiscoveryConfig discovery_config(const ServeConfig& config, std::shared_ptr<const PeerIdentity> identity,
                                       const std::string& address, const std::string& model_id, uint32_t model_blocks,
                                       std::optional<core::BlockSpan> pinned, const AnnouncedSpeeds& speeds,
                                       const std::vector<std::string>& adapters) {
  const std::string model_name = announced_model_name(config);
  ServerDiscoveryConfig d;
  d.initial_peers = config.initial_peers;
  d.dht_listen = config.dht_listen.empty() ? HostPort{parse_host_port(config.listen, true).host, 0}.to_string()
                                           : config.dht_listen;
  d.fingerprint = model_id;
  core::BalancerNodeConfig& b = d.balancer;
  b.peer = identity->peer_id();
  d.identity = std::move(identity);
  b.address = address;
  b.model_id = model_name;
  b.model_blocks = model_blocks;
  b.num_blocks = config.num_blocks;
  b.blocks = pinned;
  b.throughput_rps = speeds.throughput_rps;
  b.inference_rps = speeds.inference_rps;
  b.adapters = adapters;
  b.cache_tokens_free = config.cache_tokens;
  b.join_delay_s = config.join_delay_s;
  b.balance_period_s = config.balance_period_s;
  b.balance_quality = config.balance_quality;
  b.update_period_s = config.update_period_s;
  b.seed = config.seed != 0 ? config.seed : b.peer.value;
  return d;
}

}  // namespace bouquet::net

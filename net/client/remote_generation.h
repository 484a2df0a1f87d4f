// Generation through a swarm: the client holds only the embeddings, final norm and LM head
// (gpu::ClientHead); the blocks run on the servers of a RemoteInferenceSession's chain. Sampling
// happens here, outside the core, exactly as in local generation (gpu/sampling.h): the same
// prompt, sampler settings and model give the same ids as `generate --local` when the wire is
// lossless (compression none).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/compression.h"
#include "gpu/generation.h"
#include "net/client/remote_session.h"

namespace bouquet::gpu {
class ClientHead;
struct ModelConfig;
}  // namespace bouquet::gpu

namespace bouquet::net {

struct RemoteGenerationOptions {
  core::Compression compression = core::Compression::none;
  double cache_wait_timeout_s = 30;
  double reply_timeout_s = 30;
  core::RecoveryPolicy recovery = core::RecoveryPolicy::replay;
  double recovery_deadline_s = 60;
  core::Routing routing = core::Routing::greedy;  // as RemoteSessionConfig::routing
  double spot_check_rate = 0;                     // core/spot_check.h
};

// One core::Recovery with servers named by address (`generate --json`'s `recoveries`).
struct RecoveryReport {
  core::BlockSpan span;               // the blocks re-planned
  std::string failed_peer;            // address of the server that failed
  std::string cause;                  // how it failed, one line
  std::vector<RouteHop> replacement;  // who took the span over
  uint32_t positions_replayed = 0;    // earlier positions the replacement had to process
  double duration_s = 0;              // from noticing the failure to caught up
  bool succeeded = false;
};

// One core::SpotCheck with servers named by address (`generate --json`'s `spot_checks`).
struct SpotCheckReport {
  core::BlockSpan span;
  std::string checked;                // address of the server checked
  std::vector<std::string> checkers;  // who ran the same inputs: the second opinion, then the third
  uint64_t step = 0;                  // the generation step (1 = the prompt)
  std::string outcome;                // core::to_string(SpotCheckOutcome)
  std::string liar;                   // address of the server found lying; "" = none
};

// `check` with its servers named by their addresses in `client`.
SpotCheckReport spot_check_report(const SwarmClient& client, const core::SpotCheck& check);

struct RemoteGeneration {
  gpu::GenerationResult result;
  std::vector<RouteHop> route;  // the chain the session opened with
  // One step through that chain as min-latency routing priced it (round trips + per-block
  // compute); 0 when not known.
  double expected_step_s = 0;
  std::vector<RecoveryReport> recoveries;
  std::vector<SpotCheckReport> spot_checks;
};

// A session of `model` (identified by `model_id`) for `max_length` positions, as `options` say.
RemoteSessionConfig remote_session_config(const gpu::ModelConfig& model, const std::string& model_id,
                                          uint64_t session_id, uint32_t max_length,
                                          const RemoteGenerationOptions& options, const std::string& adapter = "");

// `recovery` with its servers named by address.
RecoveryReport recovery_report(const SwarmClient& client, const core::Recovery& recovery);

// "none" | "f16" | "int8" (also the core's names "float16", "int8_blockwise"); throws
// std::invalid_argument otherwise.
core::Compression parse_compression(std::string_view text);

// Discovers the swarm if not done yet, opens a session for the prompt plus max_new_tokens
// positions, prefills, samples token by token, closes. `model_id` is the client's model
// fingerprint. Throws RemoteError (naming the server) when the swarm fails it.
RemoteGeneration generate_remote_ids(const gpu::ClientHead& head, SwarmClient& client, const std::string& model_id,
                                     const gpu::GenerationRequest& request, const RemoteGenerationOptions& options,
                                     const std::function<void(gpu::TokenId)>& on_token = {});

}  // namespace bouquet::net

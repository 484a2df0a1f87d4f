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
#include "net/remote_session.h"

namespace bouquet::gpu {
class ClientHead;
}

namespace bouquet::net {

struct RemoteGenerationOptions {
  core::Compression compression = core::Compression::none;
  double cache_wait_timeout_s = 30;
  double reply_timeout_s = 30;
};

struct RemoteGeneration {
  gpu::GenerationResult result;
  std::vector<RouteHop> route;  // the chain the session used
};

// "none" | "f16" | "int8" (also the core's names "float16", "int8_blockwise"); throws
// std::invalid_argument otherwise.
core::Compression parse_compression(std::string_view text);

// Discovers the swarm if not done yet, opens a session for the prompt plus max_new_tokens
// positions, prefills, samples token by token, closes. `model_id` is the client's model
// fingerprint. Throws RemoteError (naming the server) when the swarm fails it.
RemoteGeneration generate_remote_ids(const gpu::ClientHead& head, SwarmClient& client,
                                     const std::string& model_id,
                                     const gpu::GenerationRequest& request,
                                     const RemoteGenerationOptions& options,
                                     const std::function<void(gpu::TokenId)>& on_token = {});

}  // namespace bouquet::net

#include "net/client/remote_generation.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "core/min_latency_route.h"
#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"

namespace bouquet::net {

core::Compression parse_compression(std::string_view text) {
  if (text == "none") return core::Compression::none;
  if (text == "f16" || text == "float16") return core::Compression::float16;
  if (text == "int8" || text == "int8_blockwise") return core::Compression::int8_blockwise;
  throw std::invalid_argument(fmt::format("compression '{}' is not one of none, f16, int8", text));
}

RemoteSessionConfig remote_session_config(const gpu::ModelConfig& model, const std::string& model_id,
                                          uint64_t session_id, uint32_t max_length,
                                          const RemoteGenerationOptions& options, const std::string& adapter) {
  RemoteSessionConfig config;
  config.session_id = session_id;
  config.model_id = model_id;
  config.num_blocks = static_cast<uint32_t>(model.num_layers);
  config.hidden_size = static_cast<uint32_t>(model.hidden_size);
  config.max_length = max_length;
  config.batch = 1;
  config.compression = options.compression;
  config.cache_wait_timeout_s = options.cache_wait_timeout_s;
  config.reply_timeout_s = options.reply_timeout_s;
  config.recovery = options.recovery;
  config.recovery_deadline_s = options.recovery_deadline_s;
  config.routing = options.routing;
  config.adapter = adapter;
  config.spot_check_rate = options.spot_check_rate;
  return config;
}

RecoveryReport recovery_report(const SwarmClient& client, const core::Recovery& r) {
  RecoveryReport report{r.span,
                        client.address_of(r.failed_peer),
                        r.cause.to_string(),
                        {},
                        r.positions_replayed,
                        r.succeeded ? r.duration_s() : 0.0,
                        r.succeeded};
  for (const core::Hop& hop : r.replacement)
    report.replacement.push_back(RouteHop{client.address_of(hop.peer), hop.span});
  return report;
}

RemoteGeneration generate_remote_ids(const gpu::ClientHead& head, SwarmClient& client, const std::string& model_id,
                                     const gpu::GenerationRequest& request, const RemoteGenerationOptions& options,
                                     const std::function<void(gpu::TokenId)>& on_token) {
  RemoteGeneration out;
  out.result = gpu::empty_generation(request);
  if (request.max_new_tokens == 0) return out;

  // Session ids only need to differ between this client's sessions on one connection; drawn
  // from the run's seed like every other id.
  core::Rng ids = core::Rng(request.sampling.seed).derive(0x5e5510);
  const RemoteSessionConfig config = remote_session_config(
      head.model_config(), model_id, core::draw_session_id(ids),
      static_cast<uint32_t>(request.prompt_ids.size() + request.max_new_tokens), options, request.adapter);
  RemoteInferenceSession session(client, config);
  session.open();
  out.route = session.route();
  {
    const auto records = client.records();
    // A server that measured nothing (a pinned server without discovery) makes the price a guess.
    bool measured = true;
    for (const core::Hop& hop : session.chain()) {
      for (const auto& r : records) {
        if (r.peer == hop.peer && !(r.inference_rps > 0)) measured = false;
      }
    }
    const double step_s =
        core::chain_latency_s(session.chain(), records, uint64_t{config.batch} * config.max_length, client.rtt());
    out.expected_step_s = measured && std::isfinite(step_s) ? step_s : 0.0;
  }

  RemoteSteps steps(session);
  out.result = gpu::run_generation(head, steps, request, gpu::every_token(on_token));
  for (const core::Recovery& r : session.recoveries()) out.recoveries.push_back(recovery_report(client, r));
  for (const core::SpotCheck& c : session.spot_checks()) out.spot_checks.push_back(spot_check_report(client, c));
  session.close();
  return out;
}

SpotCheckReport spot_check_report(const SwarmClient& client, const core::SpotCheck& c) {
  SpotCheckReport report{c.span,
                         client.address_of(c.checked),
                         {},
                         c.step_id,
                         std::string(core::to_string(c.outcome)),
                         c.liar ? client.address_of(*c.liar) : ""};
  for (const core::Chain* chain : {&c.checker, &c.referee}) {
    for (const core::Hop& hop : *chain) report.checkers.push_back(client.address_of(hop.peer));
  }
  return report;
}

}  // namespace bouquet::net

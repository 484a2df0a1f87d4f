#include "net/client/generate_swarm.h"

#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include <filesystem>

#include "core/planners.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/fingerprint.h"
#include "gpu/gguf_tokenizer.h"
#include "net/dht/dht_directory.h"
#include "net/rpc/address.h"

namespace bouquet::net {
namespace {

std::vector<std::string> split_peers(const std::string& text) {
  std::vector<std::string> peers = split_list(text);
  if (peers.empty()) throw std::invalid_argument("--peers lists no HOST:PORT");
  return peers;
}

std::string describe_route(const std::vector<RouteHop>& hops) {
  std::string out;
  for (const auto& hop : hops)
    out += fmt::format("{}{} {}", out.empty() ? "" : " -> ", hop.address, hop.span.to_string());
  return out;
}

nlohmann::json route_json(const std::vector<RouteHop>& hops) {
  nlohmann::json route = nlohmann::json::array();
  for (const RouteHop& hop : hops) route.push_back({{"peer", hop.address}, {"blocks", {hop.span.begin, hop.span.end}}});
  return route;
}

// Online servers of the model as the directory says now, with the sessions' model id.
std::vector<core::ServerRecord> directory_records(DhtDirectory& directory, const std::string& name, uint32_t num_blocks,
                                                  const std::string& model_id) {
  core::DirectoryAnswer answer = directory.lookup_now(core::DirectoryLookup{0, name, core::BlockSpan{0, num_blocks}});
  std::vector<core::ServerRecord> records;
  for (core::ServerRecord& record : answer.records) {
    if (record.state != core::ServerState::online) continue;
    record.model_id = model_id;        // the directory checked the fingerprint; sessions name the model by it
    record.expires_at = core::kNever;  // unexpired now, on the directory's clock
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace

std::string default_model_name(const std::string& model_dir) {
  std::filesystem::path path = std::filesystem::path(model_dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path.filename().string();
}

std::unique_ptr<DhtDirectory> join_swarm_directory(SwarmClientConfig& client_config, const SwarmGenerateOptions& swarm,
                                                   const std::string& model_dir, uint32_t num_blocks,
                                                   const std::string& model_id) {
  const std::string name = swarm.model_name.empty() ? default_model_name(model_dir) : swarm.model_name;
  DhtDirectoryConfig dht;
  dht.listen = swarm.dht_listen;
  dht.initial_peers = swarm.initial_peers;
  dht.fingerprint = model_id;
  dht.log = [](const std::string& line) {
    if (!routine_dht_skip(line)) std::cerr << "bouquet: dht: " << line << "\n";
  };
  auto directory = std::make_unique<DhtDirectory>(std::move(dht));
  if (!directory->wait_connected(10)) {
    throw RemoteError(
        core::Error{core::ErrorCode::peer_unreachable,
                    fmt::format("no DHT node answered at {} within 10 s", fmt::join(swarm.initial_peers, ","))});
  }
  const auto records = directory_records(*directory, name, num_blocks, model_id);
  for (const auto& record : records) {
    client_config.identities[record.address].insert(record.peer);  // who must answer there
    if (std::find(client_config.peers.begin(), client_config.peers.end(), record.address) ==
        client_config.peers.end()) {
      client_config.peers.push_back(record.address);
    }
  }
  if (client_config.peers.empty()) {
    throw RemoteError(core::Error{core::ErrorCode::no_route,
                                  fmt::format("the DHT at {} lists no online server of model '{}' (fingerprint {})",
                                              fmt::join(swarm.initial_peers, ","), name, model_id)});
  }
  client_config.directory = [dir = directory.get(), name, num_blocks, model_id] {
    return directory_records(*dir, name, num_blocks, model_id);
  };
  return directory;
}

RemoteGenerationOptions remote_generation_options(const gpu::GenerateConfig& config,
                                                  const SwarmGenerateOptions& swarm) {
  RemoteGenerationOptions options;
  options.compression = parse_compression(swarm.compression);
  const auto policy = core::parse_recovery_policy(swarm.recovery);
  if (!policy || *policy == core::RecoveryPolicy::none) {
    throw std::invalid_argument(
        fmt::format("--recovery '{}' is not one of replay, restart, cacheless, restart_from_scratch", swarm.recovery));
  }
  if (!(swarm.recovery_deadline_s > 0)) throw std::invalid_argument("--recovery-deadline must be > 0 seconds");
  options.recovery = *policy;
  options.recovery_deadline_s = swarm.recovery_deadline_s;
  options.spot_check_rate = swarm.spot_check_rate;
  const std::string routing = swarm.routing.empty()
                                  ? std::string(core::to_string(core::default_routing(!swarm.initial_peers.empty())))
                                  : swarm.routing;
  const auto planner = core::parse_routing(routing);
  if (!planner) {
    throw std::invalid_argument(fmt::format("--routing '{}' is not one of {}", routing, core::routing_names()));
  }
  options.routing = *planner;
  return options;
}

RemoteGeneration generate_through_swarm(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm,
                                        const std::function<void(std::string_view)>& on_text) {
  if (config.local) throw gpu::InputError("give either --local or --peers, not both");
  if (swarm.peers.empty() == swarm.initial_peers.empty()) {
    throw gpu::InputError("give exactly one of --peers and --initial-peers");
  }
  if (config.prompt.empty() == config.prompt_ids.empty()) {
    throw gpu::InputError("give exactly one of --prompt and --prompt-ids");
  }
  if (config.threads < 0) throw gpu::InputError("--threads must be >= 0");
  if (config.threads > 0) at::set_num_threads(config.threads);
  const RemoteGenerationOptions options = remote_generation_options(config, swarm);
  SwarmClientConfig client_config;
  if (!swarm.peers.empty()) client_config.peers = split_peers(swarm.peers);

  // As in local generation: ids given by hand need no tokenizer.
  std::unique_ptr<gpu::Tokenizer> tokenizer;
  try {
    tokenizer = gpu::load_model_tokenizer(config.model);
  } catch (const std::exception& e) {
    if (config.prompt_ids.empty()) throw;
    std::cerr << "bouquet: no tokenizer (" << e.what() << "); printing ids only\n";
  }
  const gpu::ClientHead head({config.model, config.dtype, config.device});
  const std::string model_id = model_fingerprint(config.model);
  std::unique_ptr<DhtDirectory> directory;
  if (!swarm.initial_peers.empty()) {
    directory = join_swarm_directory(client_config, swarm, config.model,
                                     static_cast<uint32_t>(head.model_config().num_layers), model_id);
  }

  gpu::GenerationRequest request = gpu::generation_request(config, tokenizer.get(), head.model_config());
  if (!config.adapter_dir.empty()) {
    throw gpu::InputError(
        "--adapter-dir works with --local; through servers, name an adapter they hold with --adapter NAME");
  }
  request.adapter = config.adapter;

  SwarmClient client(client_config);
  std::optional<gpu::StreamDecoder> stream;
  if (tokenizer && on_text) stream.emplace(*tokenizer);
  RemoteGeneration generation = generate_remote_ids(head, client, model_id, request, options, [&](gpu::TokenId id) {
    if (stream) on_text(stream->push(id));
  });
  if (stream) on_text(stream->finish());
  if (tokenizer) generation.result.text = tokenizer->decode(generation.result.ids);
  return generation;
}

std::string swarm_generation_json(const RemoteGeneration& generation, const std::string& compression) {
  nlohmann::json json = nlohmann::json::parse(gpu::generation_json(generation.result));
  json["route"] = route_json(generation.route);
  json["expected_step_s"] = generation.expected_step_s;
  json["expected_tokens_per_s"] = generation.expected_step_s > 0 ? 1.0 / generation.expected_step_s : 0.0;
  json["compression"] = compression;
  nlohmann::json recoveries = nlohmann::json::array();
  for (const RecoveryReport& r : generation.recoveries) {
    recoveries.push_back({{"blocks", {r.span.begin, r.span.end}},
                          {"failed_peer", r.failed_peer},
                          {"cause", r.cause},
                          {"replacement", route_json(r.replacement)},
                          {"positions_replayed", r.positions_replayed},
                          {"duration_s", r.duration_s},
                          {"succeeded", r.succeeded}});
  }
  json["recoveries"] = recoveries;
  nlohmann::json checks = nlohmann::json::array();
  for (const SpotCheckReport& c : generation.spot_checks) {
    checks.push_back({{"blocks", {c.span.begin, c.span.end}},
                      {"checked", c.checked},
                      {"checkers", c.checkers},
                      {"step", c.step},
                      {"outcome", c.outcome},
                      {"liar", c.liar}});
  }
  json["spot_checks"] = checks;
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int run_generate_through_swarm(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm) {
  if (config.json) {
    fmt::print("{}\n", swarm_generation_json(generate_through_swarm(config, swarm), swarm.compression));
    return 0;
  }
  const auto generation = generate_through_swarm(config, swarm, [](std::string_view piece) {
    fmt::print("{}", piece);
    std::fflush(stdout);
  });
  fmt::print("\n");
  std::fflush(stdout);  // the text line first, then the summary, even when both go to a file
  std::string recovered;
  for (const auto& r : generation.recoveries) {
    recovered += fmt::format("; blocks {} of {} recovered on {} ({} positions replayed, {:.2f} s)", r.span.to_string(),
                             r.failed_peer, describe_route(r.replacement), r.positions_replayed, r.duration_s);
  }
  const std::string expected = generation.expected_step_s > 0
                                   ? fmt::format(" (expected {:.1f} tokens/s)", 1.0 / generation.expected_step_s)
                                   : "";
  for (const auto& c : generation.spot_checks) {
    if (!c.liar.empty())
      recovered += fmt::format("; spot check at step {}: {} lied (blocks {})", c.step, c.liar, c.span.to_string());
  }
  fmt::print(stderr, "[{} tokens, {:.1f} tokens/s, stop: {}; route: {}{}{}]\n", generation.result.ids.size(),
             generation.result.tokens_per_s, generation.result.stop_reason, describe_route(generation.route), expected,
             recovered);
  return 0;
}

}  // namespace bouquet::net

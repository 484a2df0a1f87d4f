#include "net/api/api_swarm.h"

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/fingerprint.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"
#include "net/api/stop_text.h"
#include "net/client/generate_swarm.h"
#include "net/client/remote_generation.h"
#include "net/dht/dht_directory.h"

namespace bouquet::net::api {
namespace {

std::unique_ptr<gpu::Tokenizer> tokenizer_of(const std::string& model) {
  try {
    return gpu::load_model_tokenizer(model);
  } catch (const std::exception& e) {
    throw gpu::ModelFileError(fmt::format("bouquet api needs the model's tokenizer: {}", e.what()));
  }
}

}  // namespace

ApiSwarm::ApiSwarm(ApiSwarmConfig config)
    : config_(std::move(config)),
      model_name_(config_.model_name.empty() ? default_model_name(config_.model) : config_.model_name),
      model_id_(model_fingerprint(config_.model)),
      head_({config_.model, config_.dtype, config_.device}),
      tokenizer_(tokenizer_of(config_.model)),
      chat_template_(gpu::load_chat_template(config_.model, "", /*plain_without_template=*/true)) {
  if (int{!config_.peers.empty()} + int{!config_.initial_peers.empty()} + int{config_.local} != 1) {
    throw gpu::InputError("give exactly one of --peers, --initial-peers and --local");
  }
  parse_compression(config_.compression);  // refuses a bad name now, not at the first request
  eos_ids_ = head_.model_config().eos_token_ids;
  if (tokenizer_->eos_id) eos_ids_.push_back(*tokenizer_->eos_id);
  if (config_.local) {
    local_blocks_ = std::make_unique<gpu::SpanRunner>(
        gpu::SpanRunnerConfig{config_.model, 0, -1, config_.dtype, config_.device, config_.quant});
  }
  if (config_.initial_peers.empty()) return;
  DhtDirectoryConfig dht;
  dht.listen = config_.dht_listen;
  dht.initial_peers = config_.initial_peers;
  dht.fingerprint = model_id_;
  dht.log = [](const std::string& line) {
    if (!routine_dht_skip(line)) std::cerr << "bouquet: dht: " << line << "\n";
  };
  directory_ = std::make_unique<DhtDirectory>(std::move(dht));
  if (!directory_->wait_connected(10)) {
    throw RemoteError(
        core::Error{core::ErrorCode::peer_unreachable,
                    fmt::format("no DHT node answered at {} within 10 s", fmt::join(config_.initial_peers, ","))});
  }
}

ApiSwarm::~ApiSwarm() = default;

SwarmClientConfig ApiSwarm::client_config() {
  SwarmClientConfig client;
  client.connect_timeout_s = config_.connect_timeout_s;
  client.request_timeout_s = config_.reply_timeout_s;
  if (!directory_) {
    client.peers = config_.peers;
    return client;
  }
  const auto num_blocks = static_cast<uint32_t>(head_.model_config().num_layers);
  auto lookup = [this, num_blocks] {
    std::lock_guard lock(directory_mutex_);
    core::DirectoryAnswer answer =
        directory_->lookup_now(core::DirectoryLookup{0, model_name_, core::BlockSpan{0, num_blocks}});
    std::vector<core::ServerRecord> records;
    for (core::ServerRecord& record : answer.records) {
      if (record.state != core::ServerState::online) continue;
      record.model_id = model_id_;  // the directory checked the fingerprint; sessions name the model by it
      record.expires_at = core::kNever;
      records.push_back(std::move(record));
    }
    return records;
  };
  for (const core::ServerRecord& record : lookup()) {
    client.identities[record.address].insert(record.peer);  // who must answer there (identity challenge)
    if (std::find(client.peers.begin(), client.peers.end(), record.address) == client.peers.end()) {
      client.peers.push_back(record.address);
    }
  }
  if (client.peers.empty()) {
    throw RemoteError(
        core::Error{core::ErrorCode::no_route, fmt::format("the DHT at {} lists no online server of model '{}'",
                                                           fmt::join(config_.initial_peers, ","), model_name_)});
  }
  client.directory = lookup;
  return client;
}

uint64_t ApiSwarm::open_local_session(int64_t max_length) {
  std::lock_guard lock(local_mutex_);
  const uint64_t id = next_local_session_++;
  local_blocks_->open_session(id, 1, max_length);
  return id;
}

at::Tensor ApiSwarm::local_step(uint64_t session, const at::Tensor& hidden) {
  std::lock_guard lock(local_mutex_);
  return local_blocks_->step(session, hidden);
}

void ApiSwarm::close_local_session(uint64_t session) {
  std::lock_guard lock(local_mutex_);
  local_blocks_->close_session(session);
}

ApiGeneration::ApiGeneration(ApiSwarm& swarm, std::vector<gpu::TokenId> prompt_ids, int64_t max_tokens,
                             ApiSampling sampling, std::vector<std::string> stop)
    : swarm_(swarm),
      prompt_ids_(std::move(prompt_ids)),
      max_tokens_(max_tokens),
      sampling_(sampling),
      stop_(std::move(stop)) {}

ApiGeneration::~ApiGeneration() { close(); }

void ApiGeneration::close() {
  if (local_session_) swarm_.close_local_session(*local_session_);
  local_session_.reset();
  session_.reset();  // closes the session on its servers while the connections still stand
  client_.reset();
}

void ApiGeneration::open() {
  if (swarm_.local()) {
    local_session_ = swarm_.open_local_session(static_cast<int64_t>(prompt_ids_.size()) + max_tokens_);
    return;
  }
  client_ = std::make_unique<SwarmClient>(swarm_.client_config());
  const gpu::ModelConfig& model = swarm_.head().model_config();
  RemoteSessionConfig config;
  // Only this request's connections carry the id, so any id will do; drawn from its seed.
  core::Rng ids = core::Rng(sampling_.sampler.seed).derive(0x5e5510);
  config.session_id = core::draw_session_id(ids);
  config.routing = core::default_routing(!swarm_.config().initial_peers.empty());
  config.model_id = swarm_.model_id();
  config.num_blocks = static_cast<uint32_t>(model.num_layers);
  config.hidden_size = static_cast<uint32_t>(model.hidden_size);
  config.max_length = static_cast<uint32_t>(prompt_ids_.size() + static_cast<size_t>(max_tokens_));
  config.compression = parse_compression(swarm_.config().compression);
  config.cache_wait_timeout_s = swarm_.config().cache_wait_timeout_s;
  config.reply_timeout_s = swarm_.config().reply_timeout_s;
  session_ = std::make_unique<RemoteInferenceSession>(*client_, config);
  session_->open();
}

namespace {

// The generation loop's steps over the blocks this process holds (`api --local`).
class LocalSteps final : public gpu::GenerationSteps {
 public:
  LocalSteps(ApiSwarm& swarm, uint64_t session) : swarm_(swarm), session_(session) {}
  at::Tensor step(const at::Tensor& hidden) override { return swarm_.local_step(session_, hidden); }

 private:
  ApiSwarm& swarm_;
  uint64_t session_;
};

}  // namespace

std::string ApiGeneration::run(const std::function<bool(std::string_view)>& on_text) {
  gpu::StreamDecoder decoder(swarm_.tokenizer());
  StopText stops(stop_);
  auto emit = [&](const std::string& piece) { return piece.empty() || on_text(piece); };
  const auto& eos = swarm_.eos_ids();
  gpu::GenerationRequest request;
  request.prompt_ids = prompt_ids_;
  request.max_new_tokens = max_tokens_;
  request.sampling = sampling_.sampler;
  request.sampling.presence_penalty = sampling_.presence_penalty;
  request.sampling.frequency_penalty = sampling_.frequency_penalty;
  request.eos_ids = eos;
  bool cancelled = false;
  // The one generation loop (gpu::run_generation): the text goes out piece by piece, a stop
  // text or a client that left ends it.
  auto sink = [&](gpu::TokenId next) {
    generated_.push_back(next);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) return true;  // the loop stops on it
    if (!emit(stops.push(decoder.push(next)))) {
      cancelled = true;
      return false;
    }
    return !stops.stopped();
  };
  std::optional<LocalSteps> local;
  std::optional<RemoteSteps> remote;
  gpu::GenerationSteps* steps = nullptr;
  if (local_session_)
    steps = &local.emplace(swarm_, *local_session_);
  else
    steps = &remote.emplace(*session_);
  const gpu::GenerationResult result = gpu::run_generation(swarm_.head(), *steps, request, sink);
  if (cancelled) return "cancelled";
  if (stops.stopped()) return "stop";
  // What the decoder and the stop matcher still hold, at the end.
  std::string tail = stops.push(decoder.finish());
  if (!stops.stopped()) tail += stops.finish();
  if (!emit(tail)) return "cancelled";
  return result.stop_reason == "eos" || stops.stopped() ? "stop" : "length";
}

}  // namespace bouquet::net::api

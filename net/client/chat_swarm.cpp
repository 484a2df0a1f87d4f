#include "net/client/chat_swarm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <stdexcept>

#include "gpu/chat_local.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/fingerprint.h"
#include "gpu/gguf_tokenizer.h"
#include "net/client/remote_session.h"
#include "net/client/swarm_client.h"
#include "net/dht/dht_directory.h"
#include "net/rpc/address.h"

namespace bouquet::net {

class SwarmChat::CurrentSteps final : public gpu::ChatSteps {
 public:
  explicit CurrentSteps(SwarmChat& chat) : chat_(chat) {}
  at::Tensor step(const at::Tensor& hidden) override { return chat_.session_steps_->step(hidden); }
  void truncate(int64_t length) override { chat_.session_steps_->truncate(length); }

 private:
  SwarmChat& chat_;
};

SwarmChat::SwarmChat(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm,
                     const std::string& chat_template, int64_t max_length)
    : options_(remote_generation_options(config, swarm)),
      // Session ids only need to differ between this client's sessions; drawn from the seed.
      session_ids_(core::Rng(config.seed).derive(0x5e5510)) {
  if (config.local) throw gpu::InputError("give either --local or --peers, not both");
  if (swarm.peers.empty() == swarm.initial_peers.empty()) {
    throw gpu::InputError("give exactly one of --peers and --initial-peers");
  }
  if (config.threads < 0) throw gpu::InputError("--threads must be >= 0");
  if (config.threads > 0) at::set_num_threads(config.threads);
  gpu::ChatTemplate format = gpu::load_chat_template(config.model, chat_template);
  tokenizer_ = gpu::load_model_tokenizer(config.model);
  head_ = std::make_unique<gpu::ClientHead>(gpu::ClientHeadConfig{config.model, config.dtype, config.device});
  max_length_ = gpu::chat_max_length(head_->model_config(), max_length, 2048);
  model_id_ = model_fingerprint(config.model);
  SwarmClientConfig client_config;
  if (!swarm.peers.empty()) {
    client_config.peers = split_list(swarm.peers);
    if (client_config.peers.empty()) throw std::invalid_argument("--peers lists no HOST:PORT");
  } else {
    directory_ = join_swarm_directory(client_config, swarm, config.model,
                                      static_cast<uint32_t>(head_->model_config().num_layers), model_id_);
  }
  client_ = std::make_unique<SwarmClient>(client_config);
  steps_ = std::make_unique<CurrentSteps>(*this);
  chat_ = std::make_unique<gpu::Chat>(
      *head_, *tokenizer_, std::move(format), *steps_,
      gpu::ChatOptions{config.max_new_tokens,
                       {config.temperature, config.top_k, config.top_p, config.repetition_penalty, config.seed},
                       max_length_});
}

SwarmChat::~SwarmChat() {
  session_steps_.reset();
  session_.reset();  // closes it on the servers while the client is still there
}

void SwarmChat::retire_session() {
  if (!session_) return;
  for (const core::Recovery& r : session_->recoveries()) past_recoveries_.push_back(recovery_report(*client_, r));
  session_steps_.reset();
  session_.reset();
}

void SwarmChat::open_session() {
  retire_session();
  chat_->forget_cache();  // a fresh session holds nothing: the next turn feeds the whole conversation
  auto session = std::make_unique<RemoteInferenceSession>(
      *client_, remote_session_config(head_->model_config(), model_id_, core::draw_session_id(session_ids_),
                                      static_cast<uint32_t>(max_length_), options_));
  ++sessions_opened_;
  session->open();
  session_ = std::move(session);
  session_steps_ = std::make_unique<RemoteSteps>(*session_);
}

std::string SwarmChat::reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text) {
  if (!session_) open_session();
  try {
    return chat_->reply(user_message, on_text);
  } catch (const RemoteError&) {
    retire_session();  // failed for good: the next turn starts a fresh one
    throw;
  }
}

std::vector<RouteHop> SwarmChat::route() const { return session_ ? session_->route() : std::vector<RouteHop>{}; }

std::vector<RecoveryReport> SwarmChat::recoveries() const {
  std::vector<RecoveryReport> all = past_recoveries_;
  if (session_) {
    for (const core::Recovery& r : session_->recoveries()) all.push_back(recovery_report(*client_, r));
  }
  return all;
}

}  // namespace bouquet::net

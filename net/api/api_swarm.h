// What `bouquet api` shares between its requests, and one request's generation through the swarm.
//
// Promises:
// - ApiSwarm holds the client's share of the model (embeddings, final norm, LM head), the
//   tokenizer and how to find servers (--peers, or a DHT joined once at start). It is safe to use
//   from many request threads at once.
// - Each ApiGeneration has its own SwarmClient (its own connections) and RemoteInferenceSession:
//   concurrent requests never share a session. open() throws RemoteError when the swarm cannot
//   serve it (no server, no chain covers the model, cache full), before any text was produced.
//   With --local, requests share the one set of blocks, each its own KV-cache session, their
//   steps taken one at a time.
// - run() is `bouquet generate`'s own loop (gpu::run_generation, gpu::Sampler; same seed -> same
//   ids), plus OpenAI's presence/frequency penalties over the tokens generated so far, stop texts
//   and EOS. When on_text returns false (the HTTP client went away) it stops at once; destroying
//   the ApiGeneration closes the session on every server of its chain and drops the connections.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/chat_template.h"
#include "gpu/client_head.h"
#include "gpu/sampling.h"
#include "net/client/remote_session.h"
#include "net/client/swarm_client.h"
#include "tokenizer/tokenizer.h"

namespace bouquet::gpu {
class SpanRunner;
}

namespace bouquet::net {
class DhtDirectory;
}

namespace bouquet::net::api {

struct ApiSwarmConfig {
  std::string model;                       // Hugging Face model folder
  std::string model_name;                  // the name clients ask for (and the DHT name); "" = the folder's name
  std::vector<std::string> peers;          // HOST:PORT of servers, or
  std::vector<std::string> initial_peers;  // HOST:PORT of DHT nodes, or
  bool local = false;                      // every block in this process
  std::string quant = "none";              // with local: block weights none | int8 | nf4 | nf4-nodq
  std::string dht_listen = "0.0.0.0:0";
  std::string compression = "none";
  std::string dtype = "f32";
  std::string device = "auto";
  double connect_timeout_s = 10;
  double reply_timeout_s = 30;
  double cache_wait_timeout_s = 10;
};

class ApiSwarm {
 public:
  // Loads the head and tokenizer, joins the DHT (RemoteError when no DHT node answers).
  explicit ApiSwarm(ApiSwarmConfig config);
  ~ApiSwarm();

  const ApiSwarmConfig& config() const { return config_; }
  const std::string& model_name() const { return model_name_; }
  const std::string& model_id() const { return model_id_; }
  const gpu::ClientHead& head() const { return head_; }
  const gpu::Tokenizer& tokenizer() const { return *tokenizer_; }
  // As `bouquet chat` applies it (gpu/chat_template.h); plain for a model without one.
  const gpu::ChatTemplate& chat_template() const { return chat_template_; }
  int64_t context_tokens() const { return head_.model_config().max_position_embeddings; }
  // The EOS ids the model's config and tokenizer name.
  const std::vector<gpu::TokenId>& eos_ids() const { return eos_ids_; }
  // A client configuration for one request: the servers given, or those the DHT lists now.
  // RemoteError (no_route) when the DHT lists no online server of the model.
  SwarmClientConfig client_config();
  bool local() const { return local_blocks_ != nullptr; }
  // With --local: a session on the blocks of this process, and one step of it (serialised).
  uint64_t open_local_session(int64_t max_length);
  at::Tensor local_step(uint64_t session, const at::Tensor& hidden);
  void close_local_session(uint64_t session);

 private:
  ApiSwarmConfig config_;
  std::string model_name_;
  std::string model_id_;
  gpu::ClientHead head_;
  std::unique_ptr<gpu::Tokenizer> tokenizer_;
  gpu::ChatTemplate chat_template_;
  std::vector<gpu::TokenId> eos_ids_;
  std::unique_ptr<DhtDirectory> directory_;
  std::mutex directory_mutex_;
  std::unique_ptr<gpu::SpanRunner> local_blocks_;
  std::mutex local_mutex_;
  uint64_t next_local_session_ = 1;
};

struct ApiSampling {
  gpu::SamplingConfig sampler;  // temperature, top_p, seed
  double presence_penalty = 0;
  double frequency_penalty = 0;
};

class ApiGeneration {
 public:
  ApiGeneration(ApiSwarm& swarm, std::vector<gpu::TokenId> prompt_ids, int64_t max_tokens, ApiSampling sampling,
                std::vector<std::string> stop);
  ~ApiGeneration();

  void open();
  // Streams text pieces; returns "stop" (EOS or a stop text), "length" (max_tokens) or
  // "cancelled" (on_text returned false). Throws RemoteError when the swarm fails mid-way.
  std::string run(const std::function<bool(std::string_view)>& on_text);
  // Closes the session on its servers and drops the connections (also done on destruction).
  void close();

  int64_t prompt_tokens() const { return static_cast<int64_t>(prompt_ids_.size()); }
  int64_t completion_tokens() const { return static_cast<int64_t>(generated_.size()); }

 private:
  ApiSwarm& swarm_;
  std::vector<gpu::TokenId> prompt_ids_;
  int64_t max_tokens_;
  ApiSampling sampling_;
  std::vector<std::string> stop_;
  std::vector<gpu::TokenId> generated_;
  std::unique_ptr<SwarmClient> client_;
  std::unique_ptr<RemoteInferenceSession> session_;  // destroyed before client_
  std::optional<uint64_t> local_session_;
};

}  // namespace bouquet::net::api

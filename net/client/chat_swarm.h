// `bouquet chat --peers HOST:PORT,...` or `--initial-peers HOST:PORT,...`: a conversation through
// a swarm. The client holds the head and tokenizer; a gpu::Chat (gpu/chat.h, the turn logic
// `chat --local` uses too) runs its turns over ONE RemoteInferenceSession kept open across turns,
// so the servers keep the conversation in their caches and each turn sends only its new tokens.
//
// Promises:
// - A server lost during a turn, or between turns, is the core session's to recover (replay of
//   its span's history to a replacement, recovery.h); a server that closed the session after its
//   idle timeout while the user was thinking is recovered the same way (without being banned).
// - When the swarm fails a turn for good (RemoteError: no server took a span over in time), the
//   conversation so far is kept and the next reply() opens a fresh session, feeding it the whole
//   conversation.
// - With lossless compression (none) the answers' ids equal `chat --local`'s on the same input.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "gpu/chat.h"
#include "net/client/generate_swarm.h"

namespace bouquet::net {

class DhtDirectory;
class RemoteInferenceSession;
class RemoteSteps;
class SwarmClient;

class SwarmChat {
 public:
  // `config`: model, peers, compression, sampling, max_new_tokens, dtype, device, threads;
  // `swarm`: --initial-peers and the recovery and routing flags; `chat_template` forces a format
  // ("" = the model's own); `max_length` bounds the conversation (0 = the model's positions, at
  // most 2048: servers reserve cache for all of it). Throws gpu::InputError,
  // std::invalid_argument (bad flags) or RemoteError (no DHT node answers).
  SwarmChat(const gpu::GenerateConfig& config, const SwarmGenerateOptions& swarm = {},
            const std::string& chat_template = "", int64_t max_length = 0);
  ~SwarmChat();

  // gpu::Chat::reply through the swarm; opens the session on first use (and after a failure).
  // Throws RemoteError when the swarm cannot answer; the conversation stays as it was.
  std::string reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text = {});

  const gpu::Chat& chat() const { return *chat_; }
  // The current session's chain (empty before the first turn).
  std::vector<RouteHop> route() const;
  // Every recovery of every session so far, servers named by address.
  std::vector<RecoveryReport> recoveries() const;
  // Sessions opened so far (more than one only after the swarm failed a turn).
  int sessions_opened() const { return sessions_opened_; }

 private:
  class CurrentSteps;  // the chat's steps: those of whichever session is open now
  void open_session();
  void retire_session();  // keeps its recoveries' reports

  RemoteGenerationOptions options_;
  std::string model_id_;
  int64_t max_length_ = 0;
  std::unique_ptr<gpu::Tokenizer> tokenizer_;
  std::unique_ptr<gpu::ClientHead> head_;
  std::unique_ptr<DhtDirectory> directory_;
  std::unique_ptr<SwarmClient> client_;
  core::Rng session_ids_;
  std::unique_ptr<RemoteInferenceSession> session_;
  std::unique_ptr<RemoteSteps> session_steps_;
  std::unique_ptr<gpu::ChatSteps> steps_;
  std::unique_ptr<gpu::Chat> chat_;
  std::vector<RecoveryReport> past_recoveries_;  // of sessions given up
  int sessions_opened_ = 0;
};

}  // namespace bouquet::net

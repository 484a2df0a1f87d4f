// SwarmClient: the client's side of the identity challenge (core/identity_proof.h, swarm_client.h).
#include <fmt/core.h>
#include <fmt/format.h>

#include <cstdint>
#include <iostream>

#include "core/identity_proof.h"
#include "net/client/swarm_client.h"
#include "net/dht/identity.h"

namespace bouquet::net {

using core::PeerId;

void SwarmClient::send(PeerId peer, core::Message message) {
  if (config_.challenge_identity) challenge(peer, message);
  network_.send(peer, message);
}

void SwarmClient::challenge(PeerId peer, core::Message& message) {
  std::visit(
      [&](auto& m) {
        if constexpr (requires { m.identity_nonce; }) {
          uint64_t id = 0;
          if constexpr (requires { m.session_id; })
            id = m.session_id;
          else
            id = m.request_id;
          m.identity_nonce = PeerIdentity::random_bytes(core::kIdentityNonceBytes);
          challenges_[{peer, id}] = Challenge{*m.identity_nonce, m.model_id};
        }
      },
      message);
}

std::optional<std::string> SwarmClient::check_proof(PeerId peer, const core::Message& message) {
  if (challenges_.empty()) return std::nullopt;
  uint64_t id = 0;
  const std::optional<core::IdentityProof>* proof = nullptr;
  if (const auto* opened = std::get_if<core::SessionOpened>(&message)) {
    id = opened->session_id;
    proof = &opened->identity_proof;
  } else if (const auto* forward = std::get_if<core::ForwardResult>(&message)) {
    id = forward->request_id;
    proof = &forward->identity_proof;
  } else if (const auto* backward = std::get_if<core::BackwardResult>(&message)) {
    id = backward->request_id;
    proof = &backward->identity_proof;
  } else if (const auto* error = std::get_if<core::ErrorReply>(&message)) {
    // A version-2 server cannot read a challenged request: it answers id 0, protocol.
    auto first = challenges_.lower_bound({peer, 0});
    const bool challenged = first != challenges_.end() && first->first.first == peer;
    if (error->request_id == 0 && error->error.code == core::ErrorCode::protocol && challenged) {
      return fmt::format(
          "it answered a challenged request with '{}' instead of a proof (a server older than wire "
          "version {} cannot prove its identity)",
          error->error.message, core::kWireVersion);
    }
    if (error->step_id == 0) challenges_.erase({peer, error->request_id});  // refused: nothing to prove
    return std::nullopt;
  } else {
    return std::nullopt;
  }
  auto it = challenges_.find({peer, id});
  if (it == challenges_.end()) return std::nullopt;  // not challenged, or answered already
  const Challenge challenge = std::move(it->second);
  challenges_.erase(it);
  if (!*proof) return std::string("it answered without an identity proof");
  const core::IdentityProof& p = **proof;
  const PeerId proven = PeerIdentity::peer_id_of_key_bytes(p.public_key);
  if (proven == PeerId{}) return fmt::format("its proof's key is not an Ed25519 key ({} bytes)", p.public_key.size());
  const auto named = identities_.find(address_of(peer));
  if (named != identities_.end() && !named->second.empty() && !named->second.contains(proven)) {
    std::vector<std::string> ids;
    for (PeerId id_named : named->second) ids.push_back(id_named.to_string());
    return fmt::format("it holds the key of peer {}, but the records for this address name peer {}", proven.to_string(),
                       fmt::join(ids, " or "));
  }
  if (!PeerIdentity::verify_bytes(
          p.public_key, core::identity_proof_message(challenge.nonce, proven, challenge.model_id), p.signature)) {
    return fmt::format("its signature (key of peer {}) does not verify over the nonce and model id",
                       proven.to_string());
  }
  return std::nullopt;
}

void SwarmClient::refuse(PeerId peer, const std::string& why) {
  const std::string reason = fmt::format("server {} failed the identity challenge: {}", address_of(peer), why);
  if (refused_.insert(peer).second) std::cerr << "bouquet: refusing " << reason << "\n";
  for (auto& [id, p] : pending_) {
    if (p.peer == peer && !p.reply && !p.error) p.error = core::Error{core::ErrorCode::identity_refused, reason};
  }
  const core::Input input = core::IdentityRefused{peer, reason};
  for (auto& [id, listener] : std::map<size_t, Listener>(listeners_)) listener(input);
}

}  // namespace bouquet::net

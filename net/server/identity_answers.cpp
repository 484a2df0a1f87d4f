#include "net/server/identity_answers.h"

#include <cstdint>

#include "core/identity_proof.h"
#include "net/dht/identity.h"

namespace bouquet::net {

IdentityAnswers::IdentityAnswers(std::shared_ptr<const PeerIdentity> identity, std::string model_id)
    : identity_(std::move(identity)), model_id_(std::move(model_id)) {}

void IdentityAnswers::received(core::PeerId from, const core::Message& message) {
  std::visit(
      [&](const auto& m) {
        if constexpr (requires { m.identity_nonce; }) {
          if (!m.identity_nonce) return;
          uint64_t id = 0;
          if constexpr (requires { m.session_id; })
            id = m.session_id;
          else
            id = m.request_id;
          auto [it, fresh] = nonces_.try_emplace(Key{from, id});
          if (fresh && per_peer_[from] >= kNoncesPerPeerMax) {
            nonces_.erase(it);
            return;
          }
          if (fresh) ++per_peer_[from];
          it->second = *m.identity_nonce;
        }
      },
      message);
}

std::optional<std::string> IdentityAnswers::take_nonce(core::PeerId to, uint64_t id) {
  auto it = nonces_.find(Key{to, id});
  if (it == nonces_.end()) return std::nullopt;
  std::string nonce = std::move(it->second);
  nonces_.erase(it);
  if (--per_peer_[to] == 0) per_peer_.erase(to);
  return nonce;
}

std::optional<core::IdentityProof> IdentityAnswers::take_proof(core::PeerId to, uint64_t id) {
  const auto nonce = take_nonce(to, id);
  if (!nonce) return std::nullopt;
  return core::IdentityProof{identity_->public_key_bytes(), identity_->sign_bytes(core::identity_proof_message(
                                                                *nonce, identity_->peer_id(), model_id_))};
}

void IdentityAnswers::sending(core::PeerId to, core::Message& message) {
  if (nonces_.empty()) return;
  if (auto* opened = std::get_if<core::SessionOpened>(&message)) {
    opened->identity_proof = take_proof(to, opened->session_id);
  } else if (auto* forward = std::get_if<core::ForwardResult>(&message)) {
    forward->identity_proof = take_proof(to, forward->request_id);
  } else if (auto* backward = std::get_if<core::BackwardResult>(&message)) {
    backward->identity_proof = take_proof(to, backward->request_id);
  } else if (auto* info = std::get_if<core::InfoReply>(&message)) {
    info->identity_proof = take_proof(to, info->request_id);
  } else if (auto* error = std::get_if<core::ErrorReply>(&message); error && error->step_id == 0) {
    take_nonce(to, error->request_id);  // refused: nothing to prove, nothing to keep
  }
}

void IdentityAnswers::forget(core::PeerId peer) {
  if (per_peer_.erase(peer) == 0) return;
  nonces_.erase(nonces_.lower_bound(Key{peer, 0}), nonces_.upper_bound(Key{peer, UINT64_MAX}));
}

}  // namespace bouquet::net

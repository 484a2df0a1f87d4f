// A server's side of the identity challenge (core/identity_proof.h): the nonce of each challenged
// open, forward, backward and info request is kept until its reply leaves, which then carries the proof (this
// server's public key and its signature of the nonce, its peer id and its model id). A request
// answered with an error, or whose peer is gone, leaves nothing behind.
//
// Promises: a reply gets a proof only when its request carried a nonce, so an old client (wire
// version 2, no nonce) gets version-2 replies; at most kNoncesPerPeerMax nonces wait per peer (a
// client that piles up more gets replies without proof, which only it will refuse).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "core/messages.h"
#include "core/peer_id.h"

namespace bouquet::net {

class PeerIdentity;

class IdentityAnswers {
 public:
  static constexpr size_t kNoncesPerPeerMax = 1024;

  IdentityAnswers(std::shared_ptr<const PeerIdentity> identity, std::string model_id);

  // A message from `from` (the connection's peer): notes its nonce, if it carries one.
  void received(core::PeerId from, const core::Message& message);
  // A message about to leave for `to`: a reply to a challenged request gets its proof.
  void sending(core::PeerId to, core::Message& message);
  // `peer` is gone: its nonces with it.
  void forget(core::PeerId peer);
  size_t waiting() const { return nonces_.size(); }

 private:
  using Key = std::pair<core::PeerId, uint64_t>;  // the peer, and the session or request id
  std::optional<std::string> take_nonce(core::PeerId to, uint64_t id);
  std::optional<core::IdentityProof> take_proof(core::PeerId to, uint64_t id);

  std::shared_ptr<const PeerIdentity> identity_;
  std::string model_id_;
  std::map<Key, std::string> nonces_;
  std::map<core::PeerId, size_t> per_peer_;
};

}  // namespace bouquet::net

// SwarmClient: the client's side of the identity challenge (core/identity_proof.h, swarm_client.h).
#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
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
          Challenge& c = challenges_[{peer, id}];
          c.nonce = *m.identity_nonce;
          if constexpr (requires { m.model_id; })
            c.model_id = m.model_id;
          else
            c.info = true;  // the reply names the model the server signs
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
  } else if (const auto* info = std::get_if<core::InfoReply>(&message)) {
    id = info->request_id;
    proof = &info->identity_proof;
  } else if (const auto* error = std::get_if<core::ErrorReply>(&message)) {
    // An older server cannot read a challenged request: it answers id 0, protocol (bad_version).
    auto first = challenges_.lower_bound({peer, 0});
    auto last = challenges_.upper_bound({peer, UINT64_MAX});
    if (error->request_id == 0 && error->error.code == core::ErrorCode::protocol && first != last) {
      std::string why = fmt::format(
          "it answered a challenged request with '{}' instead of a proof (a server older than wire "
          "version {} cannot prove its identity)",
          error->error.message, core::kWireVersion);
      if (std::any_of(first, last, [](const auto& c) { return c.second.info; })) {
        pin(peer, core::AddressPin{std::nullopt, why});
        std::erase_if(challenges_, [&](const auto& c) { return c.first.first == peer && c.second.info; });
      }
      return why;
    }
    if (error->step_id == 0) challenges_.erase({peer, error->request_id});  // refused: nothing to prove
    return std::nullopt;
  } else {
    return std::nullopt;
  }
  auto it = challenges_.find({peer, id});
  if (it == challenges_.end()) return std::nullopt;  // not challenged, or answered already
  Challenge challenge = std::move(it->second);
  challenges_.erase(it);
  if (challenge.info) challenge.model_id = std::get<core::InfoReply>(message).model_id;
  auto why = verify(peer, *proof, challenge);
  if (challenge.info) {
    pin(peer, why ? core::AddressPin{std::nullopt, *why}
                  : core::AddressPin{PeerIdentity::peer_id_of_key_bytes((*proof)->public_key), ""});
  }
  return why;
}

std::optional<std::string> SwarmClient::verify(PeerId peer, const std::optional<core::IdentityProof>& proof,
                                               const Challenge& challenge) const {
  if (!proof) return std::string("it answered without an identity proof");
  const core::IdentityProof& p = *proof;
  const PeerId proven = PeerIdentity::peer_id_of_key_bytes(p.public_key);
  if (proven == PeerId{}) return fmt::format("its proof's key is not an Ed25519 key ({} bytes)", p.public_key.size());
  const auto named = identities_.find(address_of(peer));
  if (named != identities_.end() && !named->second.empty() && !named->second.contains(proven)) {
    std::vector<std::string> ids;
    for (PeerId id_named : named->second) ids.push_back(id_named.to_string());
    return fmt::format("it holds the key of peer {}, but the records for this address name peer {}", proven.to_string(),
                       fmt::join(ids, " or "));
  }
  // A reply on an open, forward or backward comes from the key the address proved when asked
  // who it is (an info request re-asks, and may pin anew).
  const auto pinned = pins_.find(address_of(peer));
  if (!challenge.info && pinned != pins_.end() && pinned->second.key && *pinned->second.key != proven) {
    return fmt::format("it holds the key of peer {}, but this address proved the key of peer {}", proven.to_string(),
                       pinned->second.key->to_string());
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

void SwarmClient::pin(PeerId peer, core::AddressPin verdict) { pins_[address_of(peer)] = std::move(verdict); }

std::vector<core::ServerRecord> SwarmClient::keep_pinned(std::vector<core::ServerRecord> records) {
  core::PinnedRecords pinned = core::keep_pinned_records(records, pins_);
  for (const core::DroppedRecord& dropped : pinned.dropped) {
    if (said_dropped_.insert({dropped.record.peer, dropped.record.address}).second)
      std::cerr << "bouquet: dropping " << dropped.reason << "\n";
  }
  return std::move(pinned.kept);
}

void SwarmClient::drop_identities_of_other_keys() {
  // What the records found at start name for each address (config().identities), as records: the
  // same filter as the directory's, so a key dropped here is refused at session open too.
  std::vector<core::ServerRecord> named;
  for (const auto& [address, ids] : identities_) {
    for (PeerId id : ids) {
      core::ServerRecord record;
      record.peer = id;
      record.address = address;
      named.push_back(std::move(record));
    }
  }
  std::map<std::string, std::set<PeerId>> kept;
  for (const core::ServerRecord& record : keep_pinned(std::move(named))) kept[record.address].insert(record.peer);
  identities_ = std::move(kept);
}

void SwarmClient::ask_to_pin(PeerId peer) {
  if (!pin_asked_.insert(address_of(peer)).second) return;
  const uint64_t id = next_request_id();
  pinning_.insert(id);
  send(peer, core::InfoRequest{id});
}

}  // namespace bouquet::net

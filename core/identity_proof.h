// The identity challenge at session open: how a client makes sure the server answering at an
// address holds the key of the record that named it (a record copied to an impostor's address, or
// an address taken over, would otherwise send the client to the impostor).
//
// The exchange adds no message and no round trip: the client puts a fresh random nonce
// (kIdentityNonceBytes, from a cryptographic generator: never the seeded Rng) in every
// OpenSession, ForwardRequest and BackwardRequest it sends; the server answers it in the reply
// (SessionOpened, ForwardResult, BackwardResult) with its raw Ed25519 public key and its signature
// of identity_proof_message(nonce, its peer id, its model id). The client checks that the key's
// peer id (the first 8 bytes of SHA-256 of the key, net/dht/identity.h) is one that a record for
// that address names, and that the signature verifies over the nonce it sent and the model id it
// asked for. The crypto lives in the net driver; what a failed proof means (the server is avoided
// for the rest of the session or pass, its hop re-routed and the failure reported by name) is
// decided here, in the sessions, on an IdentityRefused input (input.h).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/peer_id.h"

namespace bouquet::core {

inline constexpr size_t kIdentityNonceBytes = 32;
// Names what the signature is for, so a signature made for a record or anything else cannot be
// replayed as a proof, nor a proof as anything else.
inline constexpr std::string_view kIdentityProofDomain = "bouquet-session-v1";

// domain || nonce || peer id (8 bytes, little-endian) || model id: the bytes a server signs.
std::string identity_proof_message(std::string_view nonce, PeerId peer, std::string_view model_id);

}  // namespace bouquet::core

// Identities for tests that announce records of several servers (net/dht/identity.h): the n-th
// one is made once per process, so test_peer(n) names the same server throughout a test.
#pragma once

#include <cstdint>
#include <string>

#include "core/peer_id.h"
#include "net/dht/identity.h"

namespace bouquet::net {
struct ServeConfig;  // net/server/server.h
}  // namespace bouquet::net

namespace bouquet::net::testing {

const PeerIdentity& test_identity(uint64_t n);
inline core::PeerId test_peer(uint64_t n) { return test_identity(n).peer_id(); }

// Gives `config` a key of its own, kept in a fresh directory named after `name`; returns the
// key's peer id.
core::PeerId give_own_key(ServeConfig& config, const std::string& name);

}  // namespace bouquet::net::testing

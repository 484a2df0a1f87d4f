// Identity of a node in the swarm. A PeerId is an opaque 64-bit value that drivers map to an
// address (a socket endpoint, a SimGrid host); the core only compares, hashes and prints it.
// Drivers derive it from the node's seeded Rng or from a stable name, never from a global RNG.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace bouquet::core {

struct PeerId {
  uint64_t value = 0;

  friend auto operator<=>(const PeerId&, const PeerId&) = default;
  // 16 lowercase hex digits: stable, greppable in logs.
  std::string to_string() const;
};

// FNV-1a (64-bit) of `text`: a stable hash of a name, the same on every machine and run. Ids and
// sub-streams derived from names (hosts, addresses, tensor names, sweep points) all use it.
uint64_t fnv1a(std::string_view text);

// The stable id of a node known by name: a simulated host's name, or a real server's announced
// address and model ("HOST:PORT\nMODEL"), so ids do not depend on creation order.
inline PeerId peer_id_of(std::string_view name) { return PeerId{fnv1a(name)}; }

}  // namespace bouquet::core

template <>
struct std::hash<bouquet::core::PeerId> {
  size_t operator()(const bouquet::core::PeerId& id) const noexcept { return std::hash<uint64_t>{}(id.value); }
};

// Identity of a node in the swarm. A PeerId is an opaque 64-bit value that drivers map to an
// address (a socket endpoint, a SimGrid host); the core only compares, hashes and prints it.
// Drivers derive it from the node's seeded Rng or from a stable name, never from a global RNG.
#pragma once

#include <cstdint>
#include <compare>
#include <functional>
#include <string>

namespace bouquet::core {

struct PeerId {
  uint64_t value = 0;

  friend auto operator<=>(const PeerId&, const PeerId&) = default;
  // 16 lowercase hex digits: stable, greppable in logs.
  std::string to_string() const;
};

}  // namespace bouquet::core

template <>
struct std::hash<bouquet::core::PeerId> {
  size_t operator()(const bouquet::core::PeerId& id) const noexcept {
    return std::hash<uint64_t>{}(id.value);
  }
};

#include "tests/net/support/identities.h"

#include <map>
#include <mutex>

#include "net/server/server.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net::testing {

const PeerIdentity& test_identity(uint64_t n) {
  static std::mutex mutex;
  static std::map<uint64_t, PeerIdentity> made;
  std::lock_guard lock(mutex);
  auto it = made.find(n);
  if (it == made.end()) it = made.emplace(n, PeerIdentity::generate()).first;
  return it->second;
}

core::PeerId give_own_key(ServeConfig& config, const std::string& name) {
  const auto path = fresh_dir(name) / "key.pem";
  config.identity = path.string();
  return PeerIdentity::load_or_create(path.string()).peer_id();
}

}  // namespace bouquet::net::testing

#include "tests/net/support/identities.h"

#include <map>
#include <mutex>

namespace bouquet::net::testing {

const PeerIdentity& test_identity(uint64_t n) {
  static std::mutex mutex;
  static std::map<uint64_t, PeerIdentity> made;
  std::lock_guard lock(mutex);
  auto it = made.find(n);
  if (it == made.end()) it = made.emplace(n, PeerIdentity::generate()).first;
  return it->second;
}

}  // namespace bouquet::net::testing

// Which directory records a client may route by, given what each address proved when it was
// asked who it is (the identity proof in the InfoReply, identity_proof.h).
//
// A record is signed by the key it names, but anyone may sign a record that names someone else's
// address: a rogue could send clients to an honest server with a span it does not serve, and the
// honest server's refusal would get it avoided. So a client asks every address for an InfoReply
// with a proof of the key held there, pins the address to that key, and drops every record at a
// pinned address that names another key before it plans a route. An address whose proof was
// missing or bad is trusted for nothing: all its records go. Addresses not asked yet keep their
// records (the challenge at session open still guards them).
//
// Promises: pure and deterministic: the records kept, and those dropped, keep their input order;
// each dropped record comes with a one-line reason naming its peer, address and the key proved.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/peer_id.h"
#include "core/server_record.h"

namespace bouquet::core {

// What one address proved to the client that asked it.
struct AddressPin {
  std::optional<PeerId> key;  // the key that proved itself there; unset: the proof was missing or bad
  std::string failure;        // why there is no key (empty when there is one)
};
// By address, spelled as the records the client filters spell it.
using AddressPins = std::map<std::string, AddressPin>;

struct DroppedRecord {
  ServerRecord record;
  std::string reason;  // "the record of peer P at A (blocks [b, e)): why", blocks when it names some
};

struct PinnedRecords {
  std::vector<ServerRecord> kept;
  std::vector<DroppedRecord> dropped;
};

// Records at unpinned addresses and those naming their address's pinned key are kept; the others
// are dropped with the reason.
PinnedRecords keep_pinned_records(std::span<const ServerRecord> records, const AddressPins& pins);

}  // namespace bouquet::core

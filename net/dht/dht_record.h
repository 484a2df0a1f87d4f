// The wire form of a core::ServerRecord in the DHT: one versioned JSON value per (server, block)
// under a key derived from the model name and block index. Times on the wire are Unix seconds so
// that every process reads them alike; the directory converts to and from its driver's clock.
// Decoding never throws: a malformed or unknown value is a reason string, so readers skip it.
//
// Records are signed (identity.h): each carries its announcer's public key ("key") and the Ed25519
// signature ("sig") of the record without "sig"; the peer id must be the key's. A reader drops an
// unsigned record, a bad signature and a peer id that is not the key's, so nobody can announce as
// another server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "core/server_record.h"

namespace bouquet::net {

inline constexpr int kDhtRecordVersion = 2;  // 2: signed records
// More blocks than any model has: span ends and model_blocks beyond it are forged, not large.
inline constexpr uint32_t kDhtMaxModelBlocks = 65536;

// One announced record as it travels, plus what only the wire knows.
struct DhtRecord {
  core::ServerRecord record;  // expires_at here is Unix seconds
  uint32_t block = 0;         // the key's block; the record's span must contain it
  uint32_t model_blocks = 0;  // blocks of the whole model, 0 when the announcer did not know
  std::string fingerprint;    // model fingerprint, empty when unknown
  double announced_unix_s = 0;
  uint64_t seq = 0;        // orders announcements made in the same second by one process
  std::string public_key;  // the announcer's (identity.h), 64 hex digits; set by encode
};

class PeerIdentity;

// "bouquet/v1/<model>/block/<index>" and "bouquet/v1/models": hashed into the DHT's keys.
std::string dht_block_key(const std::string& model_id, uint32_t block);
std::string dht_models_key();

// Signed by `signer`, whose peer id the record's must be (std::logic_error otherwise).
std::string encode_dht_record(const DhtRecord& record, const PeerIdentity& signer);
// Records whose signature verified, by their signature bytes, so that a reader that meets the
// same record again (under every block of its span, in every lookup and re-plan) skips the
// Ed25519 verification (tens of microseconds each). A hit needs the signature *and* every signed
// byte (key included) to equal what verified, so a tampered copy of a cached record still gets
// verified, and refused. Bounded: beyond `capacity` the oldest entry goes. Thread-safe.
class VerifiedRecords {
 public:
  explicit VerifiedRecords(size_t capacity = 4096) : capacity_(capacity) {}
  bool contains(const std::string& signature, const std::string& signed_bytes) const;
  void insert(const std::string& signature, const std::string& signed_bytes);
  size_t size() const;
  uint64_t hits() const;

 private:
  size_t capacity_;
  mutable std::mutex mutex_;
  std::map<std::string, std::string> signed_by_signature_;
  std::deque<std::string> order_;  // signatures, oldest first
  mutable uint64_t hits_ = 0;
};

// The record, or why the bytes are not one (names the field). Every number is checked: an integer
// field holds an integer in range, a rate or a time is finite and in range; the signature and the
// peer id are checked against the record's key. With `verified`, a signature found there is not
// verified again, and one that verifies is added.
std::variant<DhtRecord, std::string> decode_dht_record(const std::string& bytes, VerifiedRecords* verified = nullptr);

// One entry of the model index under dht_models_key(): a model some server announced.
struct DhtModelIndexEntry {
  std::string model_id;
  uint32_t model_blocks = 0;  // 0 when the announcer did not know
  double expires_at = 0;      // Unix seconds
};
// The entry, or why the bytes are not one (names the field).
std::variant<DhtModelIndexEntry, std::string> decode_dht_model_index(const std::string& bytes);

// Newer announcement of the same peer (core::announced_later): later time, then larger sequence
// number.
bool dht_record_newer(const DhtRecord& a, const DhtRecord& b);

}  // namespace bouquet::net

// A server's identity in the swarm: an Ed25519 key pair (OpenSSL). Its peer id is derived from
// the public key, and it signs every record it announces, so nobody can announce as another
// server (overwrite its record, announce it offline, send its clients elsewhere) without its
// private key; readers drop a record whose signature or peer id does not match its key.
//
// Promises: peer_id() is the first 8 bytes of SHA-256(public key), so it cannot be chosen without
// the key; load_or_create() keeps the key in a file only its owner may read (0600), made
// atomically, and refuses one that is not an Ed25519 private key in PEM, naming the file.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/peer_id.h"

namespace bouquet::net {

class PeerIdentity {
 public:
  // A fresh key pair (a server without --identity gets a new one every start).
  static PeerIdentity generate();
  // The key in `path` (PEM), or a new one written there when the file does not exist. Throws
  // std::runtime_error naming the file when it cannot be read, parsed or written.
  static PeerIdentity load_or_create(const std::string& path);

  PeerIdentity(PeerIdentity&&) noexcept;
  PeerIdentity& operator=(PeerIdentity&&) noexcept;
  ~PeerIdentity();

  const std::string& public_key_hex() const { return public_key_hex_; }  // 64 hex digits
  core::PeerId peer_id() const { return peer_id_of_key(public_key_hex_); }
  // The Ed25519 signature of `message`, 128 hex digits.
  std::string sign(std::string_view message) const;
  // Raw forms for the wire (core/identity_proof.h): the 32-byte public key, a 64-byte signature.
  std::string public_key_bytes() const;
  std::string sign_bytes(std::string_view message) const;

  // The peer id a public key (64 hex digits) stands for; PeerId{} for a malformed key.
  static core::PeerId peer_id_of_key(std::string_view public_key_hex);
  // True when `signature_hex` is `public_key_hex`'s signature of `message`; false for anything
  // malformed.
  static bool verify(std::string_view public_key_hex, std::string_view message, std::string_view signature_hex);
  // As above, from the raw 32-byte key and 64-byte signature; PeerId{} / false for other lengths.
  static core::PeerId peer_id_of_key_bytes(std::string_view public_key);
  static bool verify_bytes(std::string_view public_key, std::string_view message, std::string_view signature);
  // `n` bytes from OpenSSL's cryptographic generator (an identity challenge's nonce).
  static std::string random_bytes(size_t n);

 private:
  struct Key;
  explicit PeerIdentity(std::unique_ptr<Key> key);
  std::unique_ptr<Key> key_;
  std::string public_key_hex_;
};

}  // namespace bouquet::net

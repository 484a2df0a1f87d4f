#include "net/dht/identity.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fmt/core.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <vector>

namespace bouquet::net {

struct PeerIdentity::Key {
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kSignatureBytes = 64;

std::string to_hex(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

std::optional<std::vector<unsigned char>> from_hex(std::string_view hex, size_t bytes) {
  if (hex.size() != 2 * bytes) return std::nullopt;
  std::vector<unsigned char> out(bytes);
  for (size_t i = 0; i < hex.size(); ++i) {
    const char c = hex[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    out[i / 2] = static_cast<unsigned char>(out[i / 2] * 16 + digit);
  }
  return out;
}

std::string public_key_of(EVP_PKEY* pkey) {
  unsigned char raw[kKeyBytes];
  size_t n = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1 || n != kKeyBytes) {
    throw std::runtime_error("could not read the identity's public key");
  }
  return to_hex(raw, n);
}

}  // namespace

PeerIdentity::PeerIdentity(std::unique_ptr<Key> key)
    : key_(std::move(key)), public_key_hex_(public_key_of(key_->pkey)) {}
PeerIdentity::PeerIdentity(PeerIdentity&&) noexcept = default;
PeerIdentity& PeerIdentity::operator=(PeerIdentity&&) noexcept = default;
PeerIdentity::~PeerIdentity() = default;

PeerIdentity PeerIdentity::generate() {
  auto key = std::make_unique<Key>();
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  const bool ok = ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &key->pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) throw std::runtime_error("could not generate an Ed25519 key pair (OpenSSL)");
  return PeerIdentity(std::move(key));
}

PeerIdentity PeerIdentity::load_or_create(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) {
    PeerIdentity made = generate();
    // Written beside, readable by its owner only, then renamed: a crash leaves no half key.
    const std::string tmp = path + ".tmp";
    const mode_t old_mask = umask(077);
    FILE* f = std::fopen(tmp.c_str(), "w");
    umask(old_mask);
    if (f == nullptr) throw std::runtime_error(fmt::format("--identity {}: cannot write the key file", path));
    const bool written = PEM_write_PrivateKey(f, made.key_->pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    const bool closed = std::fclose(f) == 0;
    std::error_code ec;
    if (!written || !closed || (fs::rename(tmp, path, ec), ec)) {
      fs::remove(tmp, ec);
      throw std::runtime_error(fmt::format("--identity {}: cannot write the key file", path));
    }
    return made;
  }
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error(fmt::format("--identity {}: cannot read the key file", path));
  auto key = std::make_unique<Key>();
  key->pkey = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (key->pkey == nullptr || EVP_PKEY_get_id(key->pkey) != EVP_PKEY_ED25519) {
    throw std::runtime_error(fmt::format("--identity {}: not an Ed25519 private key in PEM", path));
  }
  return PeerIdentity(std::move(key));
}

std::string PeerIdentity::sign(std::string_view message) const {
  const std::string raw = sign_bytes(message);
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string PeerIdentity::public_key_bytes() const {
  const auto raw = from_hex(public_key_hex_, kKeyBytes);
  return std::string(raw->begin(), raw->end());
}

std::string PeerIdentity::sign_bytes(std::string_view message) const {
  unsigned char signature[kSignatureBytes];
  size_t n = sizeof signature;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_->pkey) == 1 &&
      EVP_DigestSign(ctx, signature, &n, reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || n != kSignatureBytes) throw std::runtime_error("could not sign (OpenSSL)");
  return std::string(reinterpret_cast<const char*>(signature), n);
}

core::PeerId PeerIdentity::peer_id_of_key(std::string_view public_key_hex) {
  const auto raw = from_hex(public_key_hex, kKeyBytes);
  if (!raw) return core::PeerId{};
  return peer_id_of_key_bytes(std::string_view(reinterpret_cast<const char*>(raw->data()), raw->size()));
}

bool PeerIdentity::verify(std::string_view public_key_hex, std::string_view message, std::string_view signature_hex) {
  const auto key = from_hex(public_key_hex, kKeyBytes);
  const auto signature = from_hex(signature_hex, kSignatureBytes);
  if (!key || !signature) return false;
  return verify_bytes(std::string_view(reinterpret_cast<const char*>(key->data()), key->size()), message,
                      std::string_view(reinterpret_cast<const char*>(signature->data()), signature->size()));
}

core::PeerId PeerIdentity::peer_id_of_key_bytes(std::string_view public_key) {
  if (public_key.size() != kKeyBytes) return core::PeerId{};
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(public_key.data()), public_key.size(), digest);
  uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id = id << 8 | digest[i];
  return core::PeerId{id};
}

bool PeerIdentity::verify_bytes(std::string_view public_key, std::string_view message, std::string_view signature) {
  if (public_key.size() != kKeyBytes || signature.size() != kSignatureBytes) return false;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                               reinterpret_cast<const unsigned char*>(public_key.data()), kKeyBytes);
  if (pkey == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                   reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return ok;
}

std::string PeerIdentity::random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("could not draw random bytes (OpenSSL)");
  }
  return out;
}

}  // namespace bouquet::net

#include "core/identity_proof.h"

namespace bouquet::core {

std::string identity_proof_message(std::string_view nonce, PeerId peer, std::string_view model_id) {
  std::string message(kIdentityProofDomain);
  message += nonce;
  for (int i = 0; i < 8; ++i) message.push_back(static_cast<char>(peer.value >> (8 * i)));
  message += model_id;
  return message;
}

}  // namespace bouquet::core

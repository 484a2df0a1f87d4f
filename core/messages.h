// Every call of the protocol as a plain struct, and the Message variant drivers pass around.
// Each struct's encoded_size() is the exact byte count of its canonical encoding (wire.h), tensor
// payloads compressed as their handles say: the simulator charges it, the net layer sends it.
//
// Calls (client -> server, then the reply):
//   OpenSession     -> SessionOpened | ErrorReply      reserve a cache for an inference session
//   StepRequest     -> StepResult | ErrorReply         run new positions through the span
//   CloseSession                                       free the session (no reply)
//   ForwardRequest  -> ForwardResult | ErrorReply      stateless forward (fine-tuning)
//   BackwardRequest -> BackwardResult | ErrorReply     stateless backward (fine-tuning)
//   InfoRequest     -> InfoReply                       what the server holds and has free
// Session messages are matched by session_id (chosen by the client; the server keys sessions by
// (peer, session_id)), other calls by request_id; an ErrorReply carries whichever id it answers.
//
// Wire names are frozen: the MessageType values, field order and meanings never change within a
// wire version. Fields marked "reserved" are carried and checked now, used by later features.
//
// Identity challenge (wire version 3, identity_proof.h): an open, forward or backward may carry
// identity_nonce; the server's answer to it (SessionOpened, ForwardResult, BackwardResult) then
// carries identity_proof, its public key and its signature over the nonce, its peer id and the
// model id. The core never fills either: the net driver does the crypto and feeds the core an
// IdentityRefused (input.h) when a proof fails. A message without them is encoded at version 2,
// byte for byte what a version-2 peer sends and reads.
//
// Address pinning (wire version 4, address_pins.h): an InfoRequest may carry identity_nonce too,
// and the InfoReply then carries identity_proof, signed over the nonce, the server's peer id and
// the model id the reply names. A client pins the address to the key that proved itself there.
// A version-3 server cannot read such a request and answers with a clear bad_version error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/activation.h"
#include "core/block_span.h"
#include "core/error.h"
#include "core/peer_id.h"

namespace bouquet::core {

enum class MessageType : uint8_t {
  open_session = 1,
  session_opened = 2,
  step = 3,
  step_result = 4,
  close_session = 5,
  forward = 6,
  forward_result = 7,
  backward = 8,
  backward_result = 9,
  info_request = 10,
  info = 11,
  error = 12,
};

// Reserved for server-to-server push: where a server may send its output directly.
struct NextServer {
  PeerId peer;
  uint64_t session_id = 0;  // the client's session on that server
  BlockSpan span;
};

// A server's answer to an identity challenge: raw Ed25519 public key (32 bytes) and signature (64
// bytes) of identity_proof_message() (identity_proof.h). Lengths are the verifier's to check.
struct IdentityProof {
  std::string public_key;
  std::string signature;
};

struct OpenSession {
  static constexpr MessageType kType = MessageType::open_session;
  uint64_t session_id = 0;
  std::string model_id;     // model name and fingerprint; must equal the server's exactly
  BlockSpan span;           // blocks to run, within the server's span
  uint32_t max_length = 0;  // positions per sequence the cache must hold
  uint32_t batch = 0;       // sequences
  Compression reply_compression = Compression::none;
  double cache_wait_timeout_s = 0;            // how long the open may wait for cache room
  std::string adapter;                        // LoRA adapter every step applies, "" for none
  std::optional<std::string> identity_nonce;  // v3: fresh random bytes the server must sign
  uint64_t encoded_size() const;
};

struct SessionOpened {
  static constexpr MessageType kType = MessageType::session_opened;
  uint64_t session_id = 0;
  std::optional<IdentityProof> identity_proof;  // v3: the answer to the open's identity_nonce
  uint64_t encoded_size() const;
};

struct StepRequest {
  static constexpr MessageType kType = MessageType::step;
  uint64_t session_id = 0;
  uint64_t step_id = 0;                  // the client's step counter, echoed in the reply
  uint32_t start_position = 0;           // absolute position of the first new token; <= cached length
  Activation hidden_states;              // [batch, new tokens, hidden]
  std::optional<Activation> prompts;     // deep prompts [blocks, batch or 1, prefix, hidden]
  std::vector<NextServer> next_servers;  // reserved: server-to-server push
  uint64_t encoded_size() const;
};

struct StepResult {
  static constexpr MessageType kType = MessageType::step_result;
  uint64_t session_id = 0;
  uint64_t step_id = 0;
  uint32_t start_position = 0;
  Activation hidden_states;  // the span's output for the new positions
  uint64_t encoded_size() const;
};

struct CloseSession {
  static constexpr MessageType kType = MessageType::close_session;
  uint64_t session_id = 0;
  uint64_t encoded_size() const;
};

struct ForwardRequest {
  static constexpr MessageType kType = MessageType::forward;
  uint64_t request_id = 0;
  std::string model_id;
  BlockSpan span;
  std::string adapter;  // LoRA adapter to apply, "" for none
  Compression reply_compression = Compression::none;
  Activation hidden_states;                   // [batch, tokens, hidden]
  std::optional<Activation> prompts;          // deep prompts of the span [blocks, batch or 1, prefix, hidden]
  std::optional<std::string> identity_nonce;  // v3, as in OpenSession
  uint64_t encoded_size() const;
};

struct ForwardResult {
  static constexpr MessageType kType = MessageType::forward_result;
  uint64_t request_id = 0;
  Activation hidden_states;
  std::optional<IdentityProof> identity_proof;  // v3, as in SessionOpened
  uint64_t encoded_size() const;
};

struct BackwardRequest {
  static constexpr MessageType kType = MessageType::backward;
  uint64_t request_id = 0;
  std::string model_id;
  BlockSpan span;
  std::string adapter;  // LoRA adapter to apply (as in the forward), "" for none
  Compression reply_compression = Compression::none;
  Activation hidden_states;                   // the span's inputs, as sent in the forward
  Activation grad_outputs;                    // gradient of the loss wrt the span's outputs
  std::optional<Activation> prompts;          // deep prompts of the span [blocks, batch or 1, prefix, hidden]
  std::optional<std::string> identity_nonce;  // v3, as in OpenSession
  uint64_t encoded_size() const;
};

struct BackwardResult {
  static constexpr MessageType kType = MessageType::backward_result;
  uint64_t request_id = 0;
  Activation grad_inputs;
  std::optional<Activation> grad_prompts;       // present iff the request had prompts
  std::optional<IdentityProof> identity_proof;  // v3, as in SessionOpened
  uint64_t encoded_size() const;
};

struct InfoRequest {
  static constexpr MessageType kType = MessageType::info_request;
  uint64_t request_id = 0;
  std::optional<std::string> identity_nonce = std::nullopt;  // v4: fresh random bytes the server must sign
  uint64_t encoded_size() const;
};

struct InfoReply {
  static constexpr MessageType kType = MessageType::info;
  uint64_t request_id = 0;
  std::string model_id;
  BlockSpan span;
  uint32_t hidden_size = 0;
  std::string version;                // software version, e.g. "bouquet 0.1"
  uint64_t cache_tokens_max = 0;      // per block
  uint64_t cache_tokens_free = 0;     // per block, not reserved by any session
  std::vector<std::string> adapters;  // LoRA adapters this server applies on request
  double inference_rps = 0;           // measured one-token steps per second per block (0 = unknown)
  double forward_rps = 0;             // measured forward tokens per second per block (0 = unknown)
  double throughput_rps = 0;          // announced throughput (0 = unknown)
  // Limits (wire version 2): what the server refuses. A client is one connection; 0 = no limit.
  uint32_t request_tokens_max = 0;                             // batch x tokens of one forward or backward (over_limit)
  uint64_t client_cache_tokens_max = 0;                        // cache tokens per block one client may hold or wait for
  uint32_t client_opens_waiting_max = 0;                       // opens one client may have waiting for cache room
  uint32_t client_tasks_queued_max = 0;                        // computations one client may have queued
  uint32_t tasks_queued_max = 0;                               // computations queued from all clients (overloaded)
  std::optional<IdentityProof> identity_proof = std::nullopt;  // v4: the answer to the request's identity_nonce
  uint64_t encoded_size() const;
};

struct ErrorReply {
  static constexpr MessageType kType = MessageType::error;
  uint64_t request_id = 0;  // the session_id or request_id it answers
  uint64_t step_id = 0;     // the step it answers; 0 when not a step
  Error error;
  uint64_t encoded_size() const;
};

using Message = std::variant<OpenSession, SessionOpened, StepRequest, StepResult, CloseSession, ForwardRequest,
                             ForwardResult, BackwardRequest, BackwardResult, InfoRequest, InfoReply, ErrorReply>;

MessageType message_type(const Message& message);
// Wire name of a type ("open_session", ...), for logs and errors.
std::string_view to_string(MessageType type);
// Exact bytes of encode(message) (wire.h).
uint64_t encoded_size(const Message& message);
// The wire version encode(message) writes: 4 for an info request or reply carrying an identity
// nonce or proof, 3 for the other messages carrying one, else 2.
uint16_t wire_version_of(const Message& message);

}  // namespace bouquet::core

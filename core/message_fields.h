// Internal to the wire codec (wire.cpp): the one list of each message's fields, in wire order.
// Encoder, decoder and size counter all walk these lists, so the three can never disagree.
// Changing a list changes the wire format: bump kWireVersion.
#pragma once

#include <concepts>
#include <type_traits>

#include "core/check.h"
#include "core/messages.h"

namespace bouquet::core::wire_fields {

// `M` is `T` for the decoder and `const T` for the encoder and the size counter.
template <class M, class T>
concept Is = std::same_as<std::remove_const_t<M>, T>;

// A field added in wire version `since`: carried exactly by messages encoded at that version or
// later (wire_version_of() picks the version from what is set), so it needs no presence byte and
// a message without it stays byte for byte what older peers send and read.
template <class Io, class Optional>
void since(Io& io, uint16_t version, Optional& field, const char* name) {
  if (io.version() < version) return;
  if constexpr (std::is_const_v<Optional>) {
    BOUQUET_CHECK(field.has_value(), "a message encoded at a version whose field it lacks");
    io(*field, name);
  } else {
    io(field.emplace(), name);
  }
}

// The wire version whose messages of type `M` carry the identity challenge's fields: 3 for the
// challenge at session open, 4 for the one in InfoRequest / InfoReply (address pinning).
template <class M>
inline constexpr uint16_t kIdentitySince = 3;
template <>
inline constexpr uint16_t kIdentitySince<InfoRequest> = 4;
template <>
inline constexpr uint16_t kIdentitySince<InfoReply> = 4;

template <class Io, Is<IdentityProof> M>
void fields(Io& io, M& m) {
  io(m.public_key, "public_key");
  io(m.signature, "signature");
}

template <class Io, Is<BlockSpan> M>
void fields(Io& io, M& m) {
  io(m.begin, "begin");
  io(m.end, "end");
}

template <class Io, Is<NextServer> M>
void fields(Io& io, M& m) {
  io(m.peer, "peer");
  io(m.session_id, "session_id");
  io(m.span, "span");
}

template <class Io, Is<Error> M>
void fields(Io& io, M& m) {
  io(m.code, "code");
  io(m.message, "message");
}

template <class Io, Is<OpenSession> M>
void fields(Io& io, M& m) {
  io(m.session_id, "session_id");
  io(m.model_id, "model_id");
  io(m.span, "span");
  io(m.max_length, "max_length");
  io(m.batch, "batch");
  io(m.reply_compression, "reply_compression");
  io(m.cache_wait_timeout_s, "cache_wait_timeout_s");
  io(m.adapter, "adapter");
  since(io, 3, m.identity_nonce, "identity_nonce");
}

template <class Io, Is<SessionOpened> M>
void fields(Io& io, M& m) {
  io(m.session_id, "session_id");
  since(io, 3, m.identity_proof, "identity_proof");
}

template <class Io, Is<StepRequest> M>
void fields(Io& io, M& m) {
  io(m.session_id, "session_id");
  io(m.step_id, "step_id");
  io(m.start_position, "start_position");
  io(m.hidden_states, "hidden_states");
  io(m.prompts, "prompts");
  io(m.next_servers, "next_servers");
}

template <class Io, Is<StepResult> M>
void fields(Io& io, M& m) {
  io(m.session_id, "session_id");
  io(m.step_id, "step_id");
  io(m.start_position, "start_position");
  io(m.hidden_states, "hidden_states");
}

template <class Io, Is<CloseSession> M>
void fields(Io& io, M& m) {
  io(m.session_id, "session_id");
}

template <class Io, Is<ForwardRequest> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.model_id, "model_id");
  io(m.span, "span");
  io(m.adapter, "adapter");
  io(m.reply_compression, "reply_compression");
  io(m.hidden_states, "hidden_states");
  io(m.prompts, "prompts");
  since(io, 3, m.identity_nonce, "identity_nonce");
}

template <class Io, Is<ForwardResult> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.hidden_states, "hidden_states");
  since(io, 3, m.identity_proof, "identity_proof");
}

template <class Io, Is<BackwardRequest> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.model_id, "model_id");
  io(m.span, "span");
  io(m.adapter, "adapter");
  io(m.reply_compression, "reply_compression");
  io(m.hidden_states, "hidden_states");
  io(m.grad_outputs, "grad_outputs");
  io(m.prompts, "prompts");
  since(io, 3, m.identity_nonce, "identity_nonce");
}

template <class Io, Is<BackwardResult> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.grad_inputs, "grad_inputs");
  io(m.grad_prompts, "grad_prompts");
  since(io, 3, m.identity_proof, "identity_proof");
}

template <class Io, Is<InfoRequest> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  since(io, 4, m.identity_nonce, "identity_nonce");
}

template <class Io, Is<InfoReply> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.model_id, "model_id");
  io(m.span, "span");
  io(m.hidden_size, "hidden_size");
  io(m.version, "version");
  io(m.cache_tokens_max, "cache_tokens_max");
  io(m.cache_tokens_free, "cache_tokens_free");
  io(m.adapters, "adapters");
  io(m.inference_rps, "inference_rps");
  io(m.forward_rps, "forward_rps");
  io(m.throughput_rps, "throughput_rps");
  io(m.request_tokens_max, "request_tokens_max");
  io(m.client_cache_tokens_max, "client_cache_tokens_max");
  io(m.client_opens_waiting_max, "client_opens_waiting_max");
  io(m.client_tasks_queued_max, "client_tasks_queued_max");
  io(m.tasks_queued_max, "tasks_queued_max");
  since(io, 4, m.identity_proof, "identity_proof");
}

template <class Io, Is<ErrorReply> M>
void fields(Io& io, M& m) {
  io(m.request_id, "request_id");
  io(m.step_id, "step_id");
  io(m.error, "error");
}

}  // namespace bouquet::core::wire_fields

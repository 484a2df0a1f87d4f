#include "tests/net/support/remote_span.h"

#include <fmt/core.h>

#include "gpu/tensor_bridge.h"

namespace bouquet::net {
namespace {

at::Tensor checked_reply(SwarmClient& client, const RemoteSpanCall& call, const core::Activation& reply,
                         const core::Activation& sent, const char* what) {
  if (reply.shape != sent.shape) {
    throw RemoteError(core::Error{
        core::ErrorCode::bad_reply,
        fmt::format("server {}: {} reply has another shape than the request", client.address_of(call.peer), what)});
  }
  return tensor_from_activation(reply);
}

}  // namespace

at::Tensor remote_forward(SwarmClient& client, const RemoteSpanCall& call, const at::Tensor& hidden) {
  core::ForwardRequest request;
  request.model_id = call.model_id;
  request.span = call.span;
  request.adapter = call.adapter;
  request.reply_compression = call.compression;
  request.hidden_states = activation_from_tensor(hidden, call.compression);
  const core::Message reply = client.call(call.peer, request, call.timeout_s);
  const auto* result = std::get_if<core::ForwardResult>(&reply);
  if (!result) {
    throw RemoteError(core::Error{core::ErrorCode::bad_reply,
                                  fmt::format("server {}: answered forward with {}", client.address_of(call.peer),
                                              core::to_string(core::message_type(reply)))});
  }
  return checked_reply(client, call, result->hidden_states, request.hidden_states, "forward");
}

at::Tensor remote_backward(SwarmClient& client, const RemoteSpanCall& call, const at::Tensor& hidden,
                           const at::Tensor& grad_outputs) {
  core::BackwardRequest request;
  request.model_id = call.model_id;
  request.span = call.span;
  request.adapter = call.adapter;
  request.reply_compression = call.compression;
  request.hidden_states = activation_from_tensor(hidden, call.compression);
  request.grad_outputs = activation_from_tensor(grad_outputs, call.compression);
  const core::Message reply = client.call(call.peer, request, call.timeout_s);
  const auto* result = std::get_if<core::BackwardResult>(&reply);
  if (!result) {
    throw RemoteError(core::Error{core::ErrorCode::bad_reply,
                                  fmt::format("server {}: answered backward with {}", client.address_of(call.peer),
                                              core::to_string(core::message_type(reply)))});
  }
  return checked_reply(client, call, result->grad_inputs, request.hidden_states, "backward");
}

}  // namespace bouquet::net

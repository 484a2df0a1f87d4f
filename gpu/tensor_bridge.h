// The bridge between the core's activation handles and libtorch tensors.
//
// Promises: a tensor wrapped with activation_from_tensor() is packed for the wire straight from
// its float32 values (no copy into another buffer first), with whatever compression the handle
// carries; tensor_from_activation() turns any handle with data (received wire bytes, host
// floats, a wrapped tensor) back into a float32 CPU tensor of the handle's shape. Activations on
// the wire are float32 (DType::float32) whatever the compute dtype: compression, not dtype, is
// how a client trades accuracy for bytes.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/activation.h"

namespace bouquet::net {

// Holds a contiguous float32 CPU tensor for the wire encoder.
class TensorActivationData final : public core::ActivationData {
 public:
  explicit TensorActivationData(at::Tensor tensor);
  void pack(core::Compression compression, core::DType dtype, uint64_t count, std::vector<uint8_t>& out) const override;
  const at::Tensor& tensor() const { return tensor_; }

 private:
  at::Tensor tensor_;  // float32, CPU, contiguous
};

// A handle over `tensor` (any floating dtype and device; converted to float32 on the CPU once,
// detached from autograd) that travels with `compression`.
core::Activation activation_from_tensor(const at::Tensor& tensor,
                                        core::Compression compression = core::Compression::none);

// The handle's values as a float32 CPU tensor of its shape. Checked: the handle carries data.
at::Tensor tensor_from_activation(const core::Activation& activation);

// What the receiver of `tensor` sent with `compression` would see: packed and unpacked with the
// real codec (for tests and for emulating the wire locally).
at::Tensor round_trip(const at::Tensor& tensor, core::Compression compression);

}  // namespace bouquet::net

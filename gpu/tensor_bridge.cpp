#include "gpu/tensor_bridge.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <cstring>

#include "core/check.h"
#include "gpu/cuda_device.h"

namespace bouquet::net {

TensorActivationData::TensorActivationData(at::Tensor tensor) : tensor_(std::move(tensor)) {
  BOUQUET_CHECK(tensor_.scalar_type() == at::kFloat && tensor_.device().is_cpu() && tensor_.is_contiguous(),
                "TensorActivationData holds contiguous float32 CPU tensors");
}

void TensorActivationData::pack(core::Compression compression, core::DType dtype, uint64_t count,
                                std::vector<uint8_t>& out) const {
  BOUQUET_CHECK(count == static_cast<uint64_t>(tensor_.numel()), "activation shape does not match its tensor");
  const std::span<const float> values(tensor_.data_ptr<float>(), count);
  core::pack_values(values, compression, dtype, out);
}

namespace {

// Host buffers at the wire are pinned where a GPU is present, so copies to and from it run at the
// bus's speed (and a copy in can overlap the host's work).
bool pin_host_buffers() {
  static const bool pin = gpu::cuda_built() && torch::cuda::is_available();
  return pin;
}

}  // namespace

core::Activation activation_from_tensor(const at::Tensor& tensor, core::Compression compression) {
  BOUQUET_CHECK(tensor.defined() && tensor.is_floating_point(), "activations are floating tensors");
  at::Tensor host;
  if (tensor.device().is_cpu()) {
    host = tensor.detach().to(at::kFloat).contiguous();
  } else {
    // Converted to float32 on the device, then one copy into a pinned buffer (waits for it).
    const at::Tensor values = tensor.detach().to(at::kFloat).contiguous();
    host = at::empty(values.sizes(), at::TensorOptions().dtype(at::kFloat).pinned_memory(pin_host_buffers()));
    host.copy_(values);
  }
  core::Activation a;
  for (int64_t d : host.sizes()) {
    BOUQUET_CHECK(d >= 0 && d <= UINT32_MAX, "activation dimension out of range");
    a.shape.push_back(static_cast<uint32_t>(d));
  }
  a.dtype = core::DType::float32;
  a.compression = compression;
  a.data = std::make_shared<TensorActivationData>(std::move(host));
  return a;
}

at::Tensor tensor_from_activation(const core::Activation& activation) {
  BOUQUET_CHECK(activation.data != nullptr, "activation has no data (a simulated handle)");
  std::vector<int64_t> sizes(activation.shape.begin(), activation.shape.end());
  if (auto* held = dynamic_cast<const TensorActivationData*>(activation.data.get())) {
    return held->tensor().view(sizes);
  }
  // Received bytes or host floats: unpack once into a fresh tensor.
  std::vector<float> values = activation.to_floats();
  at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(at::kFloat).pinned_memory(pin_host_buffers()));
  std::memcpy(out.data_ptr<float>(), values.data(), values.size() * sizeof(float));
  return out;
}

at::Tensor round_trip(const at::Tensor& tensor, core::Compression compression) {
  const core::Activation a = activation_from_tensor(tensor, compression);
  std::vector<uint8_t> bytes;
  a.data->pack(compression, a.dtype, a.element_count(), bytes);
  const core::Activation received{a.shape, a.dtype, compression,
                                  std::make_shared<core::PackedActivationData>(compression, a.dtype, std::move(bytes))};
  return tensor_from_activation(received);
}

}  // namespace bouquet::net

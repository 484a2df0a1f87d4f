#include "core/activation.h"

#include "core/check.h"

namespace bouquet::core {

void FloatActivationData::pack(Compression compression, DType dtype, uint64_t count, std::vector<uint8_t>& out) const {
  BOUQUET_CHECK(count == values_.size(), "activation shape does not match its data");
  pack_values(values_, compression, dtype, out);
}

void PackedActivationData::pack(Compression compression, DType dtype, uint64_t count, std::vector<uint8_t>& out) const {
  if (compression == compression_ && dtype == dtype_) {
    BOUQUET_CHECK(bytes_.size() == packed_size(compression, dtype, count),
                  "activation shape does not match its packed data");
    out.insert(out.end(), bytes_.begin(), bytes_.end());
    return;
  }
  pack_values(unpack(count), compression, dtype, out);
}

std::vector<float> PackedActivationData::unpack(uint64_t count) const {
  return unpack_values(bytes_, compression_, dtype_, count);
}

uint64_t Activation::element_count() const {
  uint64_t n = 1;
  for (uint32_t d : shape) n *= d;
  return n;
}

uint32_t Activation::dim(size_t i) const {
  BOUQUET_CHECK(i < shape.size(), "activation has fewer dimensions than asked");
  return shape[i];
}

std::vector<float> Activation::to_floats() const {
  BOUQUET_CHECK(data != nullptr, "activation has no data (a simulated handle)");
  if (auto* floats = dynamic_cast<const FloatActivationData*>(data.get())) {
    BOUQUET_CHECK(floats->values().size() == element_count(), "activation shape/data mismatch");
    return {floats->values().begin(), floats->values().end()};
  }
  auto* packed = dynamic_cast<const PackedActivationData*>(data.get());
  BOUQUET_CHECK(packed != nullptr, "activation data is neither host floats nor wire bytes");
  return packed->unpack(element_count());
}

Activation make_activation(std::vector<uint32_t> shape, std::vector<float> values, DType dtype,
                           Compression compression) {
  Activation a{std::move(shape), dtype, compression, nullptr};
  BOUQUET_CHECK(a.element_count() == values.size(), "make_activation: shape/values mismatch");
  a.data = std::make_shared<FloatActivationData>(std::move(values));
  return a;
}

Activation make_sized_activation(std::vector<uint32_t> shape, DType dtype, Compression compression) {
  return Activation{std::move(shape), dtype, compression, nullptr};
}

}  // namespace bouquet::core

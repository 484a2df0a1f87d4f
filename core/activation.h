// Activations cross the core's seams as handles: shape, dtype and how they travel (compression)
// always, so sizes are known everywhere; the values only in the real world, as ref-counted data
// the core never looks into. The simulator moves handles without data.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/compression.h"

namespace bouquet::core {

// The values behind a handle. Opaque to the core: the net layer wraps a tensor, the tests wrap
// fake values. The only thing the core asks of it is to pack itself for the wire encoder.
class ActivationData {
 public:
  virtual ~ActivationData() = default;
  // Appends exactly packed_size(compression, dtype, count) bytes: the `count` values packed as
  // pack_values() would. Called only by the wire encoder.
  virtual void pack(Compression compression, DType dtype, uint64_t count, std::vector<uint8_t>& out) const = 0;
};

// Values held as floats in host memory.
class FloatActivationData final : public ActivationData {
 public:
  explicit FloatActivationData(std::vector<float> values) : values_(std::move(values)) {}
  void pack(Compression compression, DType dtype, uint64_t count, std::vector<uint8_t>& out) const override;
  std::span<const float> values() const { return values_; }

 private:
  std::vector<float> values_;
};

// Values exactly as they came off the wire (still compressed). Packing them again with the same
// compression and dtype copies the bytes, so a client relaying a server's output to the next
// server adds no second rounding.
class PackedActivationData final : public ActivationData {
 public:
  PackedActivationData(Compression compression, DType dtype, std::vector<uint8_t> bytes)
      : compression_(compression), dtype_(dtype), bytes_(std::move(bytes)) {}
  void pack(Compression compression, DType dtype, uint64_t count, std::vector<uint8_t>& out) const override;
  std::vector<float> unpack(uint64_t count) const;
  Compression compression() const { return compression_; }
  DType dtype() const { return dtype_; }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  Compression compression_;
  DType dtype_;
  std::vector<uint8_t> bytes_;
};

struct Activation {
  // Dimensions, outermost first. Hidden states are [batch, tokens, hidden]; deep prompts are
  // [blocks, batch, prefix tokens, hidden].
  std::vector<uint32_t> shape;
  DType dtype = DType::float32;
  Compression compression = Compression::none;  // how it travels on the wire
  std::shared_ptr<const ActivationData> data;   // null in simulation

  uint64_t element_count() const;
  uint64_t memory_bytes() const { return element_count() * dtype_bytes(dtype); }
  uint64_t wire_bytes() const { return packed_size(compression, dtype, element_count()); }
  uint32_t dim(size_t i) const;  // shape[i], checked

  // The values as floats: unpacked from wire bytes or read from host memory. Checked: the data
  // must be one of the two host-side kinds above (drivers with other kinds convert themselves).
  std::vector<float> to_floats() const;
};

// A handle over host floats, e.g. what a test or a client head produced.
Activation make_activation(std::vector<uint32_t> shape, std::vector<float> values, DType dtype = DType::float32,
                           Compression compression = Compression::none);
// A handle with no data: what the simulator moves around.
Activation make_sized_activation(std::vector<uint32_t> shape, DType dtype = DType::float32,
                                 Compression compression = Compression::none);

}  // namespace bouquet::core

#include "core/positions.h"

#include <cstring>

#include "core/check.h"

namespace bouquet::core {
namespace {

// What a receiver decodes from `a` as it travels.
std::vector<float> received_values(const Activation& a) {
  std::vector<uint8_t> bytes;
  a.data->pack(a.compression, a.dtype, a.element_count(), bytes);
  return unpack_values(bytes, a.compression, a.dtype, a.element_count());
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// A handle over decoded values: `preferred` compression if it carries them exactly.
Activation from_received(std::vector<uint32_t> shape, DType dtype, Compression preferred,
                         std::vector<float> values) {
  Compression compression = preferred;
  if (preferred != Compression::none) {
    std::vector<uint8_t> bytes;
    pack_values(values, preferred, dtype, bytes);
    if (!same_bits(unpack_values(bytes, preferred, dtype, values.size()), values)) compression = Compression::none;
  }
  return make_activation(std::move(shape), std::move(values), dtype, compression);
}

}  // namespace

uint32_t token_count(const Activation& a) {
  BOUQUET_CHECK(a.shape.size() == 3, "hidden states must be [batch, tokens, hidden]");
  return a.shape[1];
}

Activation slice_tokens(const Activation& a, uint32_t begin, uint32_t end) {
  const uint32_t tokens = token_count(a);
  BOUQUET_CHECK(begin < end && end <= tokens, "slice_tokens: positions out of range");
  if (begin == 0 && end == tokens) return a;
  std::vector<uint32_t> shape{a.shape[0], end - begin, a.shape[2]};
  if (!a.data) return make_sized_activation(std::move(shape), a.dtype, a.compression);
  const auto values = received_values(a);
  const uint64_t row = uint64_t{a.shape[2]};
  std::vector<float> out;
  out.reserve(uint64_t{a.shape[0]} * (end - begin) * row);
  for (uint32_t r = 0; r < a.shape[0]; ++r) {
    const auto first = values.begin() + static_cast<ptrdiff_t>((uint64_t{r} * tokens + begin) * row);
    out.insert(out.end(), first, first + static_cast<ptrdiff_t>((end - begin) * row));
  }
  return from_received(std::move(shape), a.dtype, a.compression, std::move(out));
}

Activation concat_tokens(std::span<const Activation> parts) {
  BOUQUET_CHECK(!parts.empty(), "concat_tokens of nothing");
  if (parts.size() == 1) return parts[0];
  const Activation& head = parts[0];
  uint32_t tokens = 0;
  for (const auto& p : parts) {
    BOUQUET_CHECK(token_count(p) > 0 && p.shape[0] == head.shape[0] && p.shape[2] == head.shape[2] &&
                      p.dtype == head.dtype && (p.data == nullptr) == (head.data == nullptr),
                  "concat_tokens: parts differ in batch, hidden size, dtype or data presence");
    tokens += p.shape[1];
  }
  std::vector<uint32_t> shape{head.shape[0], tokens, head.shape[2]};
  if (!head.data) return make_sized_activation(std::move(shape), head.dtype, head.compression);
  std::vector<std::vector<float>> values;
  for (const auto& p : parts) values.push_back(received_values(p));
  const uint64_t row = uint64_t{head.shape[2]};
  std::vector<float> out;
  out.reserve(uint64_t{head.shape[0]} * tokens * row);
  for (uint32_t r = 0; r < head.shape[0]; ++r) {
    for (size_t i = 0; i < parts.size(); ++i) {
      const uint64_t n = parts[i].shape[1] * row;
      const auto first = values[i].begin() + static_cast<ptrdiff_t>(r * n);
      out.insert(out.end(), first, first + static_cast<ptrdiff_t>(n));
    }
  }
  return from_received(std::move(shape), head.dtype, head.compression, std::move(out));
}

}  // namespace bouquet::core

#include "core/positions.h"

#include <algorithm>
#include <cstring>
#include <utility>

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
Activation from_received(std::vector<uint32_t> shape, DType dtype, Compression preferred, std::vector<float> values) {
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

namespace {

// Positions [begin, end) of `a`, whose values as received are `values`.
Activation slice_received(const Activation& a, const std::vector<float>& values, uint32_t begin, uint32_t end) {
  const uint32_t tokens = a.shape[1];
  std::vector<uint32_t> shape{a.shape[0], end - begin, a.shape[2]};
  const uint64_t row = uint64_t{a.shape[2]};
  std::vector<float> out;
  out.reserve(uint64_t{a.shape[0]} * (end - begin) * row);
  for (uint32_t r = 0; r < a.shape[0]; ++r) {
    const auto first = values.begin() + static_cast<ptrdiff_t>((uint64_t{r} * tokens + begin) * row);
    out.insert(out.end(), first, first + static_cast<ptrdiff_t>((end - begin) * row));
  }
  return from_received(std::move(shape), a.dtype, a.compression, std::move(out));
}

}  // namespace

Activation slice_tokens(const Activation& a, uint32_t begin, uint32_t end) {
  const uint32_t tokens = token_count(a);
  BOUQUET_CHECK(begin < end && end <= tokens, "slice_tokens: positions out of range");
  if (begin == 0 && end == tokens) return a;
  if (!a.data) return make_sized_activation({a.shape[0], end - begin, a.shape[2]}, a.dtype, a.compression);
  return slice_received(a, received_values(a), begin, end);
}

std::vector<Activation> split_tokens(const Activation& a, uint32_t part_tokens) {
  const uint32_t tokens = token_count(a);
  BOUQUET_CHECK(part_tokens > 0 && tokens > 0, "split_tokens: empty parts or nothing to split");
  std::vector<Activation> parts;
  if (part_tokens >= tokens) {
    parts.push_back(a);
    return parts;
  }
  std::vector<float> values;
  if (a.data) values = received_values(a);
  for (uint32_t begin = 0; begin < tokens; begin += part_tokens) {
    const uint32_t end = std::min(tokens, begin + part_tokens);
    parts.push_back(a.data ? slice_received(a, values, begin, end)
                           : make_sized_activation({a.shape[0], end - begin, a.shape[2]}, a.dtype, a.compression));
  }
  return parts;
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

namespace {

// Elements before and after `axis`: a tensor is outer x shape[axis] x inner.
std::pair<uint64_t, uint64_t> around(const std::vector<uint32_t>& shape, size_t axis) {
  uint64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  return {outer, inner};
}

}  // namespace

Activation slice_axis(const Activation& a, size_t axis, uint32_t begin, uint32_t end) {
  BOUQUET_CHECK(axis < a.shape.size() && begin < end && end <= a.shape[axis], "slice_axis: out of range");
  if (begin == 0 && end == a.shape[axis]) return a;
  std::vector<uint32_t> shape = a.shape;
  shape[axis] = end - begin;
  if (!a.data) return make_sized_activation(std::move(shape), a.dtype, a.compression);
  const auto values = received_values(a);
  const auto [outer, inner] = around(a.shape, axis);
  std::vector<float> out;
  out.reserve(outer * (end - begin) * inner);
  for (uint64_t o = 0; o < outer; ++o) {
    const auto first = values.begin() + static_cast<ptrdiff_t>((o * a.shape[axis] + begin) * inner);
    out.insert(out.end(), first, first + static_cast<ptrdiff_t>((end - begin) * inner));
  }
  return from_received(std::move(shape), a.dtype, a.compression, std::move(out));
}

Activation concat_axis(std::span<const Activation> parts, size_t axis) {
  BOUQUET_CHECK(!parts.empty(), "concat_axis of nothing");
  if (parts.size() == 1) return parts[0];
  const Activation& head = parts[0];
  BOUQUET_CHECK(axis < head.shape.size(), "concat_axis: no such axis");
  std::vector<uint32_t> shape = head.shape;
  shape[axis] = 0;
  for (const auto& p : parts) {
    bool same = p.shape.size() == head.shape.size() && p.dtype == head.dtype &&
                (p.data == nullptr) == (head.data == nullptr) && p.shape[axis] > 0;
    for (size_t d = 0; same && d < p.shape.size(); ++d) same = d == axis || p.shape[d] == head.shape[d];
    BOUQUET_CHECK(same, "concat_axis: parts differ beyond the axis, in dtype or in data presence");
    shape[axis] += p.shape[axis];
  }
  if (!head.data) return make_sized_activation(std::move(shape), head.dtype, head.compression);
  const auto [outer, inner] = around(head.shape, axis);
  std::vector<std::vector<float>> values;
  for (const auto& p : parts) values.push_back(received_values(p));
  std::vector<float> out;
  out.reserve(outer * shape[axis] * inner);
  for (uint64_t o = 0; o < outer; ++o) {
    for (size_t i = 0; i < parts.size(); ++i) {
      const uint64_t n = parts[i].shape[axis] * inner;
      const auto first = values[i].begin() + static_cast<ptrdiff_t>(o * n);
      out.insert(out.end(), first, first + static_cast<ptrdiff_t>(n));
    }
  }
  return from_received(std::move(shape), head.dtype, head.compression, std::move(out));
}

Activation sum_activations(std::span<const Activation> parts) {
  BOUQUET_CHECK(!parts.empty(), "sum of nothing");
  if (parts.size() == 1) return parts[0];
  const Activation& head = parts[0];
  for (const auto& p : parts) {
    BOUQUET_CHECK(p.shape == head.shape && (p.data == nullptr) == (head.data == nullptr),
                  "sum_activations: parts differ in shape or data presence");
  }
  if (!head.data) return head;
  std::vector<float> total = received_values(head);
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto values = received_values(parts[i]);
    for (size_t k = 0; k < total.size(); ++k) total[k] += values[k];
  }
  return make_activation(head.shape, std::move(total), head.dtype, Compression::none);
}

}  // namespace bouquet::core

// A contiguous range of transformer blocks [begin, end), the unit a server holds and a hop of a
// client's chain covers.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace bouquet::core {

struct BlockSpan {
  uint32_t begin = 0;
  uint32_t end = 0;

  uint32_t size() const { return end > begin ? end - begin : 0; }
  bool empty() const { return end <= begin; }
  bool contains(uint32_t block) const { return begin <= block && block < end; }
  bool contains(const BlockSpan& other) const { return begin <= other.begin && other.end <= end && !other.empty(); }

  friend auto operator<=>(const BlockSpan&, const BlockSpan&) = default;
  // "[3, 7)": the notation used in logs and error messages.
  std::string to_string() const;
};

}  // namespace bouquet::core

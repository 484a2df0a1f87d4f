#include "tokenizer/sentencepiece_normalizer.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

bool is_trail_byte(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }
bool is_valid_codepoint(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

// Length of one character judged by its lead byte alone, as SentencePiece's OneCharLen.
size_t one_char_length(std::string_view text) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return std::min<size_t>(text.size(), kLengths[static_cast<uint8_t>(text[0]) >> 4]);
}

}  // namespace

size_t valid_utf8_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  if (b(0) < 0x80) return 1;
  if (s.size() >= 2 && (b(0) & 0xE0) == 0xC0) {
    const uint32_t cp = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    if (is_trail_byte(s[1]) && cp >= 0x80 && is_valid_codepoint(cp)) return 2;
  } else if (s.size() >= 3 && (b(0) & 0xF0) == 0xE0) {
    const uint32_t cp = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && cp >= 0x800 && is_valid_codepoint(cp)) return 3;
  } else if (s.size() >= 4 && (b(0) & 0xF8) == 0xF0) {
    const uint32_t cp = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && is_trail_byte(s[3]) && cp >= 0x10000 && is_valid_codepoint(cp))
      return 4;
  }
  return 0;
}

PrefixMatcher::PrefixMatcher(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {
  std::stable_sort(pieces_.begin(), pieces_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::pair<size_t, bool> PrefixMatcher::match(std::string_view text) const {
  for (const auto& piece : pieces_)
    if (text.starts_with(piece)) return {piece.size(), true};
  return {one_char_length(text), false};
}

SentencePieceNormalizer::SentencePieceNormalizer(const SentencePieceModel::Normalizer& spec,
                                                 const PrefixMatcher& user_defined, std::string_view source)
    : spec_(spec), user_defined_(user_defined) {
  const std::string_view blob = spec.precompiled_charsmap;
  if (blob.empty()) return;
  // Layout: little-endian uint32 trie size, the double-array trie, then the replacement strings.
  uint32_t trie_bytes = 0;
  if (blob.size() <= 4) throw std::runtime_error(fmt::format("{}: precompiled_charsmap is truncated", source));
  for (int i = 0; i < 4; ++i) trie_bytes |= static_cast<uint32_t>(static_cast<uint8_t>(blob[i])) << (8 * i);
  if (trie_bytes >= blob.size() - 4 || trie_bytes % 4 != 0 || trie_bytes == 0)
    throw std::runtime_error(fmt::format("{}: precompiled_charsmap has a trie of {} bytes in a {}-byte blob", source,
                                         trie_bytes, blob.size()));
  trie_.resize(trie_bytes / 4);
  std::memcpy(trie_.data(), blob.data() + 4, trie_bytes);
  normalized_ = blob.substr(4 + trie_bytes);
  if (normalized_.back() != '\0') normalized_.push_back('\0');  // every value must end in the buffer
}

bool SentencePieceNormalizer::longest_rule(std::string_view input, size_t& length, uint32_t& value) const {
  // Darts-clone unit: bit 8 = has leaf, low 31 bits = value (leaf units), label = low byte and the
  // top bit, offset = bits 10.. shifted by 8 more when bit 9 is set.
  const auto offset = [](uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); };
  const auto label = [](uint32_t unit) { return unit & ((1u << 31) | 0xFF); };
  const auto has_leaf = [](uint32_t unit) { return ((unit >> 8) & 1) == 1; };
  length = 0;
  size_t node = 0;
  if (trie_.empty()) return false;
  node ^= offset(trie_[0]);
  for (size_t i = 0; i < input.size(); ++i) {
    const auto c = static_cast<uint8_t>(input[i]);
    node ^= c;
    if (node >= trie_.size()) return length > 0;
    const uint32_t unit = trie_[node];
    if (label(unit) != c) return length > 0;
    node ^= offset(unit);
    if (node >= trie_.size()) return length > 0;
    if (has_leaf(unit)) {
      length = i + 1;
      value = trie_[node] & ((1u << 31) - 1);
    }
  }
  return length > 0;
}

std::pair<std::string_view, size_t> SentencePieceNormalizer::normalize_prefix(std::string_view input) const {
  if (const auto [length, found] = user_defined_.match(input); found) return {input.substr(0, length), length};
  size_t rule_length = 0;
  uint32_t value = 0;
  if (longest_rule(input, rule_length, value) && value < normalized_.size())
    return {std::string_view(normalized_.data() + value), rule_length};
  if (const size_t length = valid_utf8_length(input); length > 0) return {input.substr(0, length), length};
  // A malformed byte becomes U+FFFD and consumes one byte.
  return {"\xEF\xBF\xBD", 1};
}

std::string SentencePieceNormalizer::normalize(std::string_view input) const {
  std::string out;
  if (spec_.remove_extra_whitespaces) {
    while (!input.empty()) {
      const auto [text, consumed] = normalize_prefix(input);
      if (text != " ") break;
      input.remove_prefix(consumed);
    }
  }
  if (input.empty()) return out;
  const std::string_view space = spec_.escape_whitespaces ? kSpaceSymbol : std::string_view(" ");
  out.reserve(input.size() * 3);
  if (spec_.add_dummy_prefix) out.append(space);
  bool previous_is_space = spec_.remove_extra_whitespaces;
  while (!input.empty()) {
    auto [text, consumed] = normalize_prefix(input);
    while (previous_is_space && text.starts_with(' ')) text.remove_prefix(1);
    if (!text.empty()) {
      for (const char c : text) {
        if (c == ' ')
          out.append(space);
        else
          out.push_back(c);
      }
      previous_is_space = text.ends_with(' ');
    }
    input.remove_prefix(consumed);
    if (!spec_.remove_extra_whitespaces) previous_is_space = false;
  }
  if (spec_.remove_extra_whitespaces)
    while (std::string_view(out).ends_with(space)) out.resize(out.size() - space.size());
  return out;
}

}  // namespace bouquet::gpu

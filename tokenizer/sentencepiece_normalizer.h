// SentencePiece's normalizer, as its encoder applies it before segmenting: the model's precompiled
// character map (nmt_nfkc and friends; none for `identity`), removal of extra whitespace, the dummy
// prefix, and spaces escaped to U+2581. User-defined pieces pass through unchanged. Malformed UTF-8
// becomes U+FFFD one byte at a time, as in SentencePiece.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/sentencepiece_model.h"

namespace bouquet::gpu {

inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// Length of the well-formed UTF-8 character at the start of `text`, or 0 when the bytes there are
// malformed or truncated (SentencePiece's IsValidDecodeUTF8; a literal U+FFFD counts as valid).
size_t valid_utf8_length(std::string_view text);

// The longest of a set of pieces that starts a string (SentencePiece's PrefixMatcher).
class PrefixMatcher {
 public:
  explicit PrefixMatcher(std::vector<std::string> pieces);
  // Length of the longest piece starting `text` and true; else one character's length (by its
  // lead byte, capped at the text's size) and false.
  std::pair<size_t, bool> match(std::string_view text) const;

 private:
  std::vector<std::string> pieces_;  // longest first
};

class SentencePieceNormalizer {
 public:
  // Throws std::runtime_error naming `source` when the character map is malformed.
  SentencePieceNormalizer(const SentencePieceModel::Normalizer& spec, const PrefixMatcher& user_defined,
                          std::string_view source);

  std::string normalize(std::string_view input) const;

 private:
  // The normalized form of the longest rule matching the start of `input`, and how many input
  // bytes it consumes.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view input) const;
  // Darts-clone double-array common-prefix search: the longest key starting `input`.
  bool longest_rule(std::string_view input, size_t& length, uint32_t& value) const;

  SentencePieceModel::Normalizer spec_;
  const PrefixMatcher& user_defined_;
  std::vector<uint32_t> trie_;  // double-array units
  std::string normalized_;      // NUL-separated replacement strings the trie's values point into
};

}  // namespace bouquet::gpu

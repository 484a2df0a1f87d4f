// The text-splitting half of a Hugging Face `tokenizer.json` pipeline for byte-level BPE: the
// pre-tokenizers (ByteLevel with or without its GPT-2 regex, Split with a Regex or String pattern
// and any of the five delimiter behaviours, Digits, Sequence) and GPT-2's byte-to-unicode map.
// Regexes run on libpcre2-8 with UTF and UCP, so \p{L}, \p{N}, \s and lookahead mean what they
// mean to the Oniguruma engine the tokenizers library uses; malformed UTF-8 in the input is
// allowed and never matches a pattern.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace bouquet::gpu {

// Thrown when a tokenizer.json is well-formed but uses a part this reader does not implement, so
// that a caller with another usable file (tokenizer.model) can fall back to it.
class UnsupportedTokenizer : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A compiled PCRE2 pattern. Oniguruma's nested classes ("[^a[bc]]", a union) are flattened first,
// since BLOOM's pattern uses one; a negated class inside a class is refused.
class BpeRegex {
 public:
  // Throws std::runtime_error naming `source` with PCRE2's message when the pattern is invalid.
  BpeRegex(std::string_view pattern, std::string_view source);
  ~BpeRegex();
  BpeRegex(const BpeRegex&) = delete;
  BpeRegex& operator=(const BpeRegex&) = delete;

  // Non-empty, non-overlapping matches, left to right, as byte ranges [begin, end).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
};

// GPT-2's reversible map from bytes to printable characters (each byte's UTF-8 string), and back.
const std::array<std::string, 256>& byte_to_unicode();
// The byte a mapped character (a code point) stands for, or -1.
int unicode_to_byte(uint32_t code_point);

// How a Split pre-tokenizer treats the pieces its pattern matches.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Splits `text` at the matches of `regex` (or at what does not match, when `invert`).
std::vector<std::string_view> split_text(std::string_view text, const BpeRegex& regex, SplitBehavior behavior,
                                         bool invert);

// A chain of pre-tokenizers read from tokenizer.json's "pre_tokenizer".
class BpePreTokenizer {
 public:
  // `config` is the JSON object (or null). Throws std::runtime_error naming `source` for a type or
  // option it does not support.
  BpePreTokenizer(const nlohmann::json& config, std::string_view source);
  ~BpePreTokenizer();

  // The words of `text`, each to be segmented by the model on its own. After a ByteLevel step the
  // words are byte-mapped strings.
  std::vector<std::string> split(std::string_view text) const;
  // Whether a ByteLevel step maps bytes to characters (the tokenizer is byte-level).
  bool byte_level() const;

 private:
  struct Step;
  void add_steps(const nlohmann::json& config, std::string_view source);
  std::vector<Step> steps_;
  std::vector<std::unique_ptr<BpeRegex>> regexes_;
};

}  // namespace bouquet::gpu

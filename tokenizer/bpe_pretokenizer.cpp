#include "tokenizer/bpe_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

using Json = nlohmann::json;

// The split pattern of GPT-2, which ByteLevel applies when `use_regex` is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Oniguruma, the tokenizers library's regex engine, reads a class inside a class as a union, as in
// BLOOM's " ?[^(\s|[.,!?…。，、।۔،])]+"; PCRE2 would read the inner "[" as a literal and the "]" as
// the end. Flattening the inner classes gives PCRE2 the same set.
std::string flatten_nested_classes(std::string_view pattern, std::string_view source) {
  std::string out;
  int depth = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      out.append(pattern.substr(i, 2));
      ++i;
      continue;
    }
    if (depth == 0) {
      out.push_back(c);
      if (c == '[') {
        depth = 1;
        if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
        if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);  // a literal ]
      }
      continue;
    }
    if (c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {  // POSIX [:alpha:] stays
      const size_t end = pattern.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(pattern.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (c == '[') {
      if (i + 1 < pattern.size() && pattern[i + 1] == '^')
        throw UnsupportedTokenizer(
            fmt::format("{}: a negated class inside a class is not supported in '{}'", source, pattern));
      ++depth;  // the inner bracket is dropped: its members join the outer class
      continue;
    }
    if (c == ']') {
      if (--depth == 0) out.push_back(c);
      continue;
    }
    out.push_back(c);
  }
  return out;
}

pcre2_code_8* as_code(void* code) { return static_cast<pcre2_code_8*>(code); }

// Bytes to step over to reach the next character (1 inside malformed UTF-8).
size_t char_length_at(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  size_t length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (pos + length > text.size()) return 1;
  for (size_t i = 1; i < length; ++i)
    if ((static_cast<uint8_t>(text[pos + i]) & 0xC0) != 0x80) return 1;
  return length;
}

std::string escape_literal(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<uint8_t>(c);
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

SplitBehavior parse_behavior(const std::string& name, std::string_view source) {
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  throw UnsupportedTokenizer(fmt::format("{}: unknown Split behavior '{}'", source, name));
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

struct ByteMaps {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 512> to_byte;
  ByteMaps() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the rest are moved to U+0100 onwards, in order.
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : next++;
      append_utf8(to_unicode[b], cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMaps& byte_maps() {
  static const ByteMaps maps;
  return maps;
}

}  // namespace

BpeRegex::BpeRegex(std::string_view onig_pattern, std::string_view source) {
  const std::string pattern = flatten_nested_classes(onig_pattern, source);
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  if (code_ == nullptr) {
    PCRE2_UCHAR8 message[256];
    pcre2_get_error_message_8(error, message, sizeof(message));
    throw std::runtime_error(fmt::format("{}: pre-tokenizer regex does not compile at offset {}: {}", source, offset,
                                         reinterpret_cast<const char*>(message)));
  }
  pcre2_jit_compile_8(as_code(code_), PCRE2_JIT_COMPLETE);  // an optional speed-up: failure is fine
}

BpeRegex::~BpeRegex() { pcre2_code_free_8(as_code(code_)); }

std::vector<std::pair<size_t, size_t>> BpeRegex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data_8* data = pcre2_match_data_create_from_pattern_8(as_code(code_), nullptr);
  const auto subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match_8(as_code(code_), subject, text.size(), pos, 0, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free_8(data);
      PCRE2_UCHAR8 message[256];
      pcre2_get_error_message_8(rc, message, sizeof(message));
      throw std::runtime_error(fmt::format("pre-tokenizer regex failed: {}", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer_8(data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // an empty match splits nothing; step past it
      if (begin >= text.size()) break;
      pos = begin + char_length_at(text, begin);
      continue;
    }
    out.emplace_back(begin, end);
    pos = end;
  }
  pcre2_match_data_free_8(data);
  return out;
}

const std::array<std::string, 256>& byte_to_unicode() { return byte_maps().to_unicode; }

int unicode_to_byte(uint32_t code_point) {
  return code_point < byte_maps().to_byte.size() ? byte_maps().to_byte[code_point] : -1;
}

std::vector<std::string_view> split_text(std::string_view text, const BpeRegex& regex, SplitBehavior behavior,
                                         bool invert) {
  // The text as alternating (range, matched) pieces, as the tokenizers library sees it.
  struct Piece {
    size_t begin, end;
    bool matched;
  };
  std::vector<Piece> pieces;
  size_t previous = 0;
  for (const auto& [begin, end] : regex.find_all(text)) {
    if (begin > previous) pieces.push_back({previous, begin, invert});
    pieces.push_back({begin, end, !invert});
    previous = end;
  }
  if (previous < text.size()) pieces.push_back({previous, text.size(), invert});

  std::vector<Piece> kept;
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& p : pieces)
        if (!p.matched) kept.push_back(p);
      break;
    case SplitBehavior::isolated:
      kept = pieces;
      break;
    case SplitBehavior::contiguous:
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (i > 0 && pieces[i].matched == pieces[i - 1].matched)
          kept.back().end = pieces[i].end;
        else
          kept.push_back(pieces[i]);
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (size_t i = 0; i < pieces.size(); ++i) {
        const bool previous_matched = i > 0 && pieces[i - 1].matched;
        if (pieces[i].matched && !previous_matched && !kept.empty())
          kept.back().end = pieces[i].end;
        else
          kept.push_back(pieces[i]);
      }
      break;
    case SplitBehavior::merged_with_next:
      for (size_t i = pieces.size(); i-- > 0;) {
        const bool next_matched = i + 1 < pieces.size() && pieces[i + 1].matched;
        if (pieces[i].matched && !next_matched && !kept.empty())
          kept.back().begin = pieces[i].begin;
        else
          kept.push_back(pieces[i]);
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  std::vector<std::string_view> out;
  for (const auto& p : kept)
    if (p.end > p.begin) out.push_back(text.substr(p.begin, p.end - p.begin));
  return out;
}

struct BpePreTokenizer::Step {
  enum class Kind { byte_level, split } kind = Kind::split;
  const BpeRegex* regex = nullptr;  // null for a ByteLevel step without its regex
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  bool add_prefix_space = false;
};

BpePreTokenizer::BpePreTokenizer(const Json& config, std::string_view source) {
  if (!config.is_null()) add_steps(config, source);
}

BpePreTokenizer::~BpePreTokenizer() = default;

void BpePreTokenizer::add_steps(const Json& config, std::string_view source) {
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : config.at("pretokenizers")) add_steps(inner, source);
  } else if (type == "ByteLevel") {
    Step step;
    step.kind = Step::Kind::byte_level;
    step.add_prefix_space = config.value("add_prefix_space", true);
    if (config.value("use_regex", true)) {
      regexes_.push_back(std::make_unique<BpeRegex>(kGpt2Pattern, source));
      step.regex = regexes_.back().get();
    }
    steps_.push_back(step);
  } else if (type == "Split") {
    const Json& pattern = config.at("pattern");
    std::string regex;
    if (pattern.contains("Regex"))
      regex = pattern.at("Regex").get<std::string>();
    else if (pattern.contains("String"))
      regex = escape_literal(pattern.at("String").get<std::string>());
    else
      throw UnsupportedTokenizer(fmt::format("{}: Split pattern is neither Regex nor String", source));
    regexes_.push_back(std::make_unique<BpeRegex>(regex, source));
    Step step;
    step.regex = regexes_.back().get();
    step.behavior = parse_behavior(config.at("behavior").get<std::string>(), source);
    step.invert = config.value("invert", false);
    steps_.push_back(step);
  } else if (type == "Digits") {
    regexes_.push_back(std::make_unique<BpeRegex>(R"(\p{N})", source));
    Step step;
    step.regex = regexes_.back().get();
    step.behavior = config.value("individual_digits", false) ? SplitBehavior::isolated : SplitBehavior::contiguous;
    steps_.push_back(step);
  } else {
    throw UnsupportedTokenizer(
        fmt::format("{}: pre-tokenizer '{}' is not supported (supported: ByteLevel, "
                    "Split, Digits, Sequence)",
                    source, type));
  }
}

bool BpePreTokenizer::byte_level() const {
  for (const auto& step : steps_)
    if (step.kind == Step::Kind::byte_level) return true;
  return false;
}

std::vector<std::string> BpePreTokenizer::split(std::string_view text) const {
  std::vector<std::string> words;
  if (!text.empty()) words.emplace_back(text);
  for (const auto& step : steps_) {
    std::vector<std::string> next;
    for (auto& word : words) {
      if (step.kind == Step::Kind::byte_level) {
        if (step.add_prefix_space && !word.starts_with(' ')) word = ' ' + word;
        std::vector<std::string_view> parts = step.regex ? split_text(word, *step.regex, SplitBehavior::isolated, false)
                                                         : std::vector<std::string_view>{word};
        for (const auto part : parts) {
          std::string mapped;
          for (const char c : part) mapped += byte_to_unicode()[static_cast<uint8_t>(c)];
          next.push_back(std::move(mapped));
        }
      } else {
        for (const auto part : split_text(word, *step.regex, step.behavior, step.invert)) next.emplace_back(part);
      }
    }
    words = std::move(next);
  }
  return words;
}

}  // namespace bouquet::gpu

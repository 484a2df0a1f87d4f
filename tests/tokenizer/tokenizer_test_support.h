// Helpers shared by the tokenizer tests: temporary folders, files, seeded random text, and the
// reference tools (spm_train, /usr/bin/python3 with sentencepiece) the comparisons need.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/rng.h"
#include "tokenizer/tokenizer.h"

namespace bouquet::gpu::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "bouquet-tok-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

inline bool program_on_path(const std::string& name) {
  return std::system(("command -v " + name + " > /dev/null 2>&1").c_str()) == 0;
}

inline bool python_sentencepiece_available() {
  return std::system("/usr/bin/python3 -c 'import sentencepiece' > /dev/null 2>&1") == 0;
}

inline std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

inline void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Well-formed UTF-8 of up to `max_chars` characters drawn from ASCII words and spaces, Latin
// accents, Cyrillic, CJK, emoji (with joiners and modifiers), digits, newlines and tabs, and now
// and then any code point at all.
inline std::string random_utf8(core::Rng& rng, size_t max_chars) {
  static const std::vector<std::string> kPool = {"the",
                                                 " ",
                                                 " ",
                                                 "  ",
                                                 "\n",
                                                 "\t",
                                                 "ing",
                                                 "a",
                                                 "Z",
                                                 "é",
                                                 "ß",
                                                 "ñ",
                                                 "Å",
                                                 "ж",
                                                 "щ",
                                                 "中",
                                                 "文",
                                                 "日本",
                                                 "😀",
                                                 "👍🏽",
                                                 "🏳️‍🌈",
                                                 "0",
                                                 "42",
                                                 "2024",
                                                 ".",
                                                 ",",
                                                 "!?",
                                                 "'s",
                                                 "'LL",
                                                 "\"",
                                                 "<",
                                                 "|",
                                                 "\r\n",
                                                 "e\xCC\x81",
                                                 "\xE2\x96\x81",
                                                 "\xEF\xBF\xBD",
                                                 "€",
                                                 "…",
                                                 "。",
                                                 "،",
                                                 "\xC2\xA0",
                                                 "\xE3\x80\x80"};
  std::string out;
  const size_t count = rng.below(max_chars + 1);
  for (size_t i = 0; i < count; ++i) {
    if (rng.bernoulli(0.1)) {
      uint32_t cp = 0;
      do {
        cp = static_cast<uint32_t>(rng.below(0x110000));
      } while ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0);
      append_code_point(out, cp);
    } else {
      out += kPool[rng.below(kPool.size())];
    }
  }
  return out;
}

}  // namespace bouquet::gpu::test

// A Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2, Llama 3, BLOOM) as a
// Tokenizer, giving the ids the tokenizers library gives:
// - added tokens (special or not) are found first, leftmost-longest: those marked "normalized":
//   false on the raw text, the others (normalized themselves) in the normalized text between; they
//   honour lstrip/rstrip (ASCII whitespace) and single_word (ASCII letters, digits, '_' and any
//   non-ASCII byte count as word characters); the text between them goes through the pipeline;
// - normalizer: none, Prepend, Replace with a String pattern, or a Sequence of these;
// - pre-tokenizer: see bpe_pretokenizer.h; there must be a ByteLevel step;
// - model: BPE with vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, byte_fallback,
//   unk_token and fuse_unk; merges apply lowest rank first, leftmost among equals;
// - decoder: ByteLevel (or none): each token's characters map back to bytes; special added tokens
//   are skipped; the result is the exact bytes, even when they are not valid UTF-8.
// Anything else (Metaspace or WordPiece tokenizers, NFC normalizers, subword prefixes) is refused
// at load with an error naming the file and the unsupported part.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace bouquet::gpu {

class BpeTokenizer final : public Tokenizer {
 public:
  // Throws std::runtime_error naming `source` when the JSON does not describe a valid tokenizer,
  // UnsupportedTokenizer when it describes one this reader does not implement.
  BpeTokenizer(const nlohmann::json& config, std::string source);
  ~BpeTokenizer() override;
  // Reads and parses a tokenizer.json file.
  static std::unique_ptr<BpeTokenizer> load(const std::filesystem::path& file);

  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }

  // The id of this token (an added token or a vocabulary entry), or nothing.
  std::optional<TokenId> token_id(std::string_view token) const;
  // The special token the post-processor puts first in a single sequence (Llama 3's
  // <|begin_of_text|>), or nothing.
  std::optional<TokenId> template_bos() const { return template_bos_; }

 private:
  struct AddedToken {
    TokenId id;
    std::string content;
    bool single_word, lstrip, rstrip, special, normalized;
    std::string match;  // what is looked for: the content, normalized when `normalized`
  };
  struct Normalization {
    enum class Kind { prepend, replace } kind;
    std::string pattern;  // replace only
    std::string content;
  };
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  void check_id_density(int64_t id, int64_t tokens) const;
  void read_model(const nlohmann::json& model);
  void read_normalizer(const nlohmann::json& normalizer);
  void read_added_tokens(const nlohmann::json& tokens);
  void read_post_processor(const nlohmann::json& processor);
  std::string normalize(std::string_view text) const;
  // Encodes raw text between non-normalized added tokens.
  void encode_segment(std::string_view text, std::vector<TokenId>& ids) const;
  void encode_word(const std::string& word, std::vector<TokenId>& ids) const;
  // Where the next added token of one kind (normalized or not) starts in `text` at or after
  // `from`: its index in added_ and the byte range it covers (stripped whitespace included);
  // added_.size() when there is none.
  size_t next_added(std::string_view text, size_t from, bool normalized, size_t& begin, size_t& end) const;

  std::string source_;
  TokenMap vocab_;
  std::vector<std::string> id_to_token_;        // vocabulary and added tokens, by id
  std::vector<int8_t> special_;                 // by id: 1 when decode skips it
  std::unordered_map<uint64_t, Merge> merges_;  // key: left id << 32 | right id
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  std::vector<AddedToken> added_;
  // Indices into added_ by the first byte of `match`, longest first; [0] raw, [1] normalized.
  std::array<std::vector<std::vector<size_t>>, 2> added_by_first_byte_;
  std::vector<Normalization> normalizations_;
  std::unique_ptr<BpePreTokenizer> pre_tokenizer_;
  std::optional<TokenId> template_bos_;
  int64_t vocab_size_ = 0;
};

}  // namespace bouquet::gpu

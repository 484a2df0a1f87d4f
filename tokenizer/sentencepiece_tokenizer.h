// A SentencePiece `tokenizer.model` as a Tokenizer, giving the ids and text libsentencepiece gives:
// BPE models (Llama 2) merge the adjacent pair whose merged piece scores highest, leftmost first;
// unigram models take the Viterbi path of piece scores (SentencePiece's optimized encoder).
// Unknown characters become <0xXX> byte pieces when the model has byte fallback, else <unk>.
// Decoding skips control pieces, reassembles byte pieces into UTF-8 (a malformed byte becomes
// U+FFFD, as SentencePiece does), turns U+2581 into spaces and drops the first piece's leading one.
// Unsupported, with a clear error at load: WORD/CHAR models and treat_whitespace_as_suffix.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_normalizer.h"
#include "tokenizer/tokenizer.h"

namespace bouquet::gpu {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Throws std::runtime_error naming `source` when the model is inconsistent or unsupported.
  SentencePieceTokenizer(SentencePieceModel model, std::string source);
  // Reads and parses a tokenizer.model file.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::filesystem::path& file);

  std::vector<TokenId> encode(std::string_view text) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(model_.pieces.size()); }

  // The id of exactly this piece (control pieces included), or nothing.
  std::optional<TokenId> piece_id(std::string_view piece) const;
  const SentencePieceModel& model() const { return model_; }

 private:
  struct Segment {
    std::string_view piece;
    int32_t id;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  // SentencePiece's PieceToId: reserved (control, unknown, byte) pieces first, then the others,
  // else <unk>.
  int32_t to_id(std::string_view piece) const;
  std::vector<Segment> encode_bpe(std::string_view normalized) const;
  std::vector<Segment> encode_unigram(std::string_view normalized) const;
  SentencePieceModel::PieceType type_of(int32_t id) const { return model_.pieces[id].type; }

  SentencePieceModel model_;
  std::string source_;
  PieceMap pieces_;    // normal, user-defined and unused pieces: what segmentation may produce
  PieceMap reserved_;  // control, unknown and byte pieces
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_ids_{};
  size_t longest_piece_bytes_ = 0;
  float min_score_ = 0.0f;  // over normal pieces; unigram scores unknown characters below it
  float max_score_ = 0.0f;
  std::unique_ptr<PrefixMatcher> user_defined_;
  std::unique_ptr<SentencePieceNormalizer> normalizer_;
};

}  // namespace bouquet::gpu

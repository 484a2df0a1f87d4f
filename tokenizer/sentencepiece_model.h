// The contents of a SentencePiece `tokenizer.model`: its ModelProto, read from the protobuf wire
// format by hand. libsentencepiece cannot be linked beside libtorch (their protobuf copies clash),
// so this reader knows exactly the fields the encoder and decoder need and skips all others, as a
// protobuf parser would.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

struct SentencePieceModel {
  // Field numbers and enum values are those of sentencepiece_model.proto.
  enum class PieceType : int32_t {
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
  };
  enum class ModelType : int32_t { unigram = 1, bpe = 2, word = 3, character = 4 };

  struct Piece {
    std::string piece;
    float score = 0.0f;
    PieceType type = PieceType::normal;
  };

  struct Trainer {
    ModelType model_type = ModelType::unigram;
    int32_t vocab_size = 8000;
    bool byte_fallback = false;
    bool treat_whitespace_as_suffix = false;
    int32_t unk_id = 0;
    int32_t bos_id = 1;
    int32_t eos_id = 2;
    int32_t pad_id = -1;
    std::string unk_surface = " \xE2\x81\x87 ";
  };

  struct Normalizer {
    std::string name;
    std::string precompiled_charsmap;
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
    bool escape_whitespaces = true;
  };

  std::vector<Piece> pieces;
  Trainer trainer;
  Normalizer normalizer;
};

// Parses a serialized ModelProto. Throws std::runtime_error naming `source` (the file) when the
// bytes are not a well-formed ModelProto: a truncated varint or field, a wire type that does not
// fit the field, no pieces at all.
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, std::string_view source);

// Serializes `model` back to the wire format (the fields above only). Tests use it to write
// hand-made models; a parse of the result gives `model` back.
std::string serialize_sentencepiece_model(const SentencePieceModel& model);

}  // namespace bouquet::gpu

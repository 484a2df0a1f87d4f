#include "tokenizer/sentencepiece_model.h"

#include <fmt/core.h>

#include <bit>
#include <cstring>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Field numbers of sentencepiece_model.proto (frozen by protobuf's compatibility rules).
namespace field {
constexpr uint32_t kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr uint32_t kPiecePiece = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kTrainerModelType = 3, kTrainerVocabSize = 4, kTrainerTreatWhitespaceAsSuffix = 24,
                   kTrainerByteFallback = 35, kTrainerUnkId = 40, kTrainerBosId = 41, kTrainerEosId = 42,
                   kTrainerPadId = 43, kTrainerUnkSurface = 44;
constexpr uint32_t kNormName = 1, kNormCharsmap = 2, kNormAddDummyPrefix = 3, kNormRemoveExtraWhitespaces = 4,
                   kNormEscapeWhitespaces = 5;
}  // namespace field

// One protobuf message's bytes, read field by field. Every read checks the bounds, so a truncated
// file becomes an error naming the file instead of a read past the buffer.
class WireReader {
 public:
  WireReader(std::string_view bytes, std::string_view source, std::string_view message)
      : bytes_(bytes), source_(source), message_(message) {}

  bool done() const { return pos_ >= bytes_.size(); }

  // Reads the next tag; returns false at the end of the message.
  bool next(uint32_t& field_number, uint32_t& wire_type) {
    if (done()) return false;
    const uint64_t tag = varint();
    field_number = static_cast<uint32_t>(tag >> 3);
    wire_type = static_cast<uint32_t>(tag & 7);
    if (field_number == 0) fail("field number 0");
    return true;
  }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) fail("truncated varint");
      const auto byte = static_cast<uint8_t>(bytes_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("varint longer than 10 bytes");
  }

  std::string_view length_delimited() {
    const uint64_t length = varint();
    if (length > bytes_.size() - pos_) fail("truncated length-delimited field");
    const std::string_view out = bytes_.substr(pos_, length);
    pos_ += length;
    return out;
  }

  uint32_t fixed32() {
    if (bytes_.size() - pos_ < 4) fail("truncated fixed32 field");
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return value;
  }

  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case kVarint:
        varint();
        return;
      case kFixed64:
        if (bytes_.size() - pos_ < 8) fail("truncated fixed64 field");
        pos_ += 8;
        return;
      case kLengthDelimited:
        length_delimited();
        return;
      case kFixed32:
        fixed32();
        return;
      default:
        fail(fmt::format("unsupported wire type {}", wire_type));
    }
  }

  // Typed reads that first check the wire type fits the field.
  std::string_view bytes_field(uint32_t wire_type, uint32_t number) {
    expect(wire_type, kLengthDelimited, number);
    return length_delimited();
  }
  int32_t int32_field(uint32_t wire_type, uint32_t number) {
    expect(wire_type, kVarint, number);
    // Negative int32 values are sign-extended to 64 bits on the wire; truncation restores them.
    return static_cast<int32_t>(static_cast<uint32_t>(varint()));
  }
  bool bool_field(uint32_t wire_type, uint32_t number) {
    expect(wire_type, kVarint, number);
    return varint() != 0;
  }
  float float_field(uint32_t wire_type, uint32_t number) {
    expect(wire_type, kFixed32, number);
    return std::bit_cast<float>(fixed32());
  }

  [[noreturn]] void fail(std::string_view what) const {
    throw std::runtime_error(
        fmt::format("{}: not a valid SentencePiece model ({} in {} at byte {})", source_, what, message_, pos_));
  }

 private:
  void expect(uint32_t wire_type, uint32_t wanted, uint32_t number) {
    if (wire_type != wanted) fail(fmt::format("field {} has wire type {}, expected {}", number, wire_type, wanted));
  }

  std::string_view bytes_;
  std::string_view source_;
  std::string_view message_;
  size_t pos_ = 0;
};

SentencePieceModel::Piece parse_piece(std::string_view bytes, std::string_view source) {
  WireReader in(bytes, source, "SentencePiece");
  SentencePieceModel::Piece piece;
  uint32_t number = 0, wire = 0;
  while (in.next(number, wire)) {
    switch (number) {
      case field::kPiecePiece:
        piece.piece = in.bytes_field(wire, number);
        break;
      case field::kPieceScore:
        piece.score = in.float_field(wire, number);
        break;
      case field::kPieceType: {
        const int32_t type = in.int32_field(wire, number);
        if (type < 1 || type > 6) in.fail(fmt::format("unknown piece type {}", type));
        piece.type = static_cast<SentencePieceModel::PieceType>(type);
        break;
      }
      default:
        in.skip(wire);
    }
  }
  return piece;
}

SentencePieceModel::Trainer parse_trainer(std::string_view bytes, std::string_view source) {
  WireReader in(bytes, source, "TrainerSpec");
  SentencePieceModel::Trainer trainer;
  uint32_t number = 0, wire = 0;
  while (in.next(number, wire)) {
    switch (number) {
      case field::kTrainerModelType: {
        const int32_t type = in.int32_field(wire, number);
        if (type < 1 || type > 4) in.fail(fmt::format("unknown model type {}", type));
        trainer.model_type = static_cast<SentencePieceModel::ModelType>(type);
        break;
      }
      case field::kTrainerVocabSize:
        trainer.vocab_size = in.int32_field(wire, number);
        break;
      case field::kTrainerTreatWhitespaceAsSuffix:
        trainer.treat_whitespace_as_suffix = in.bool_field(wire, number);
        break;
      case field::kTrainerByteFallback:
        trainer.byte_fallback = in.bool_field(wire, number);
        break;
      case field::kTrainerUnkId:
        trainer.unk_id = in.int32_field(wire, number);
        break;
      case field::kTrainerBosId:
        trainer.bos_id = in.int32_field(wire, number);
        break;
      case field::kTrainerEosId:
        trainer.eos_id = in.int32_field(wire, number);
        break;
      case field::kTrainerPadId:
        trainer.pad_id = in.int32_field(wire, number);
        break;
      case field::kTrainerUnkSurface:
        trainer.unk_surface = in.bytes_field(wire, number);
        break;
      default:
        in.skip(wire);
    }
  }
  return trainer;
}

SentencePieceModel::Normalizer parse_normalizer(std::string_view bytes, std::string_view source) {
  WireReader in(bytes, source, "NormalizerSpec");
  SentencePieceModel::Normalizer normalizer;
  uint32_t number = 0, wire = 0;
  while (in.next(number, wire)) {
    switch (number) {
      case field::kNormName:
        normalizer.name = in.bytes_field(wire, number);
        break;
      case field::kNormCharsmap:
        normalizer.precompiled_charsmap = in.bytes_field(wire, number);
        break;
      case field::kNormAddDummyPrefix:
        normalizer.add_dummy_prefix = in.bool_field(wire, number);
        break;
      case field::kNormRemoveExtraWhitespaces:
        normalizer.remove_extra_whitespaces = in.bool_field(wire, number);
        break;
      case field::kNormEscapeWhitespaces:
        normalizer.escape_whitespaces = in.bool_field(wire, number);
        break;
      default:
        in.skip(wire);
    }
  }
  return normalizer;
}

// Minimal writer for serialize_sentencepiece_model.
void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
void put_tag(std::string& out, uint32_t number, uint32_t wire_type) {
  put_varint(out, (static_cast<uint64_t>(number) << 3) | wire_type);
}
void put_bytes(std::string& out, uint32_t number, std::string_view bytes) {
  put_tag(out, number, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_int32(std::string& out, uint32_t number, int32_t value) {
  put_tag(out, number, kVarint);
  put_varint(out, static_cast<uint64_t>(static_cast<int64_t>(value)));
}
void put_float(std::string& out, uint32_t number, float value) {
  put_tag(out, number, kFixed32);
  const auto bits = std::bit_cast<uint32_t>(value);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, std::string_view source) {
  WireReader in(bytes, source, "ModelProto");
  SentencePieceModel model;
  uint32_t number = 0, wire = 0;
  while (in.next(number, wire)) {
    switch (number) {
      case field::kModelPieces:
        model.pieces.push_back(parse_piece(in.bytes_field(wire, number), source));
        break;
      case field::kModelTrainerSpec:
        model.trainer = parse_trainer(in.bytes_field(wire, number), source);
        break;
      case field::kModelNormalizerSpec:
        model.normalizer = parse_normalizer(in.bytes_field(wire, number), source);
        break;
      default:
        in.skip(wire);
    }
  }
  if (model.pieces.empty()) in.fail("no pieces");
  return model;
}

std::string serialize_sentencepiece_model(const SentencePieceModel& model) {
  std::string out;
  for (const auto& piece : model.pieces) {
    std::string message;
    put_bytes(message, field::kPiecePiece, piece.piece);
    put_float(message, field::kPieceScore, piece.score);
    put_int32(message, field::kPieceType, static_cast<int32_t>(piece.type));
    put_bytes(out, field::kModelPieces, message);
  }
  const auto& t = model.trainer;
  std::string trainer;
  put_int32(trainer, field::kTrainerModelType, static_cast<int32_t>(t.model_type));
  put_int32(trainer, field::kTrainerVocabSize, t.vocab_size);
  put_int32(trainer, field::kTrainerTreatWhitespaceAsSuffix, t.treat_whitespace_as_suffix);
  put_int32(trainer, field::kTrainerByteFallback, t.byte_fallback);
  put_int32(trainer, field::kTrainerUnkId, t.unk_id);
  put_int32(trainer, field::kTrainerBosId, t.bos_id);
  put_int32(trainer, field::kTrainerEosId, t.eos_id);
  put_int32(trainer, field::kTrainerPadId, t.pad_id);
  put_bytes(trainer, field::kTrainerUnkSurface, t.unk_surface);
  put_bytes(out, field::kModelTrainerSpec, trainer);
  const auto& n = model.normalizer;
  std::string normalizer;
  put_bytes(normalizer, field::kNormName, n.name);
  if (!n.precompiled_charsmap.empty()) put_bytes(normalizer, field::kNormCharsmap, n.precompiled_charsmap);
  put_int32(normalizer, field::kNormAddDummyPrefix, n.add_dummy_prefix);
  put_int32(normalizer, field::kNormRemoveExtraWhitespaces, n.remove_extra_whitespaces);
  put_int32(normalizer, field::kNormEscapeWhitespaces, n.escape_whitespaces);
  put_bytes(out, field::kModelNormalizerSpec, normalizer);
  return out;
}

}  // namespace bouquet::gpu

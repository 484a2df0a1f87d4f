// StreamDecoder: what it emits, pushed id by id, adds up to decode(all ids), and it emits text as
// soon as it is stable rather than at the end.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer_test_support.h"

namespace bouquet::gpu {
namespace {

using Type = SentencePieceModel::PieceType;

// <unk> <s> </s>, bytes at 3..258, then word pieces with and without U+2581.
SentencePieceTokenizer sentencepiece(bool remove_extra_whitespaces) {
  SentencePieceModel model;
  model.trainer.model_type = SentencePieceModel::ModelType::bpe;
  model.trainer.byte_fallback = true;
  model.normalizer.remove_extra_whitespaces = remove_extra_whitespaces;
  model.pieces = {{"<unk>", 0, Type::unknown}, {"<s>", 0, Type::control}, {"</s>", 0, Type::control}};
  for (int b = 0; b < 256; ++b) model.pieces.push_back({fmt::format("<0x{:02X}>", b), 0, Type::byte});
  float score = -1;
  for (const char* piece : {"\xE2\x96\x81", "\xE2\x96\x81\xE2\x96\x81", "a", "b",
                            "\xE2\x96\x81"
                            "a",
                            "\xE2\x96\x81"
                            "bc",
                            "ok", "\xC3\xA9", "\xE2\x96\x81\xE4\xB8\xAD"})
    model.pieces.push_back({piece, score--, Type::normal});
  return SentencePieceTokenizer(model, "hand-made");
}

BpeTokenizer byte_level() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_unicode()[b]] = b;
  vocab[byte_to_unicode()[' '] + "a"] = 256;
  const nlohmann::json config = {
      {"added_tokens", nlohmann::json::array({{{"id", 257}, {"content", "<|eot|>"}, {"special", true}}})},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {byte_to_unicode()[' '] + " a"}}}}};
  return BpeTokenizer(config, "hand-made");
}

std::string streamed(const Tokenizer& tok, const std::vector<TokenId>& ids) {
  StreamDecoder stream(tok);
  std::string out;
  for (const TokenId id : ids) out += stream.push(id);
  return out + stream.finish();
}

void expect_streams_add_up(const Tokenizer& tok, uint64_t seed, int64_t id_limit) {
  SCOPED_TRACE(fmt::format("seed {}", seed));
  core::Rng rng(seed);
  for (int i = 0; i < 2000; ++i) {
    std::vector<TokenId> ids;
    for (uint64_t n = rng.below(25); n > 0; --n) {
      // Half the time a byte piece, so that multi-byte characters get split across ids.
      ids.push_back(rng.bernoulli(0.5) ? static_cast<TokenId>(rng.below(id_limit))
                                       : static_cast<TokenId>(rng.below(std::min<int64_t>(id_limit, 260))));
    }
    ASSERT_EQ(test::to_hex(streamed(tok, ids)), test::to_hex(tok.decode(ids))) << "case " << i;
  }
}

TEST(StreamDecoder, AddsUpToDecodeOnRandomIds) {
  const uint64_t seed = 99;
  std::printf("stream decoder seed %llu\n", static_cast<unsigned long long>(seed));
  const auto keep_spaces = sentencepiece(false);
  const auto strip_spaces = sentencepiece(true);
  const auto bpe = byte_level();
  expect_streams_add_up(keep_spaces, seed, keep_spaces.vocab_size() + 2);
  expect_streams_add_up(strip_spaces, seed + 1, strip_spaces.vocab_size());
  expect_streams_add_up(bpe, seed + 2, bpe.vocab_size() + 1);
  // Real models as well, when spm_train can make one.
  if (test::program_on_path("spm_train")) {
    test::TempDir dir;
    train_sentencepiece(tiny_corpus(), 600, dir.path());
    expect_streams_add_up(*SentencePieceTokenizer::load(dir / "tokenizer.model"), seed + 3, 600);
  }
}

TEST(StreamDecoder, EmitsStableTextAtOnceAndHoldsBackPartialCharacters) {
  const auto tok = sentencepiece(false);
  const TokenId space_a = *tok.piece_id(
      "\xE2\x96\x81"
      "a");
  const TokenId space = *tok.piece_id("\xE2\x96\x81");
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(1), "");          // <s>
  EXPECT_EQ(stream.push(space_a), "a");   // the first piece's dummy space is dropped
  EXPECT_EQ(stream.push(space_a), " a");  // later ones keep theirs
  EXPECT_EQ(stream.push(3 + 0xE2), "");   // € is E2 82 AC: nothing until it is whole
  EXPECT_EQ(stream.push(3 + 0x82), "");
  EXPECT_EQ(stream.push(3 + 0xAC), "\xE2\x82\xAC");
  EXPECT_EQ(stream.push(space), " ");
  EXPECT_EQ(stream.finish(), "");
  // A stream that ends inside a character gets SentencePiece's U+FFFD for it at the end.
  EXPECT_EQ(stream.push(3 + 0xE2), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");

  const auto bpe = byte_level();
  StreamDecoder bytes(bpe);
  EXPECT_EQ(bytes.push(0xC3), "");
  EXPECT_EQ(bytes.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(bytes.push(257), "");  // special: skipped
  EXPECT_EQ(bytes.push(256), " a");
  EXPECT_EQ(bytes.push(0xF0), "");
  EXPECT_EQ(bytes.finish(), "\xF0");  // exact bytes, even a lone lead byte
}

}  // namespace
}  // namespace bouquet::gpu

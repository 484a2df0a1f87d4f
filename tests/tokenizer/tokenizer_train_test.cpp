// train_sentencepiece on the shipped corpus: exact piece counts, Llama 2's special ids and
// normalization, reproducible bytes, lossless round trips, and clear errors.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer_test_support.h"

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

class TrainSentencePiece : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::program_on_path("spm_train")) GTEST_SKIP() << "spm_train (Debian package sentencepiece) is missing";
  }
  TempDir dir_;
};

TEST(TinyCorpus, IsEmbeddedEnglishProseOfTheAdvertisedSize) {
  const std::string_view corpus = tiny_corpus();
  EXPECT_GE(corpus.size(), 30'000u);
  EXPECT_LE(corpus.size(), 60'000u);
  EXPECT_TRUE(corpus.starts_with("A swarm of computers"));
  EXPECT_EQ(corpus, test::read_file(fs::path(BOUQUET_SOURCE_DIR) / "tokenizer/tiny/corpus.txt"));
}

TEST_F(TrainSentencePiece, MakesExactlyTheAskedPiecesWithLlamaIdsAndNormalization) {
  for (const int64_t vocab : {512, 1000, 4000}) {
    const fs::path out = dir_ / fmt::format("v{}", vocab);
    train_sentencepiece(tiny_corpus(), vocab, out);
    const auto model = parse_sentencepiece_model(test::read_file(out / "tokenizer.model"), "tokenizer.model");
    ASSERT_EQ(static_cast<int64_t>(model.pieces.size()), vocab);
    EXPECT_EQ(model.pieces[0].piece, "<unk>");
    EXPECT_EQ(model.pieces[1].piece, "<s>");
    EXPECT_EQ(model.pieces[2].piece, "</s>");
    EXPECT_EQ(model.pieces[3].piece, "<0x00>");
    EXPECT_EQ(model.pieces[3 + 255].piece, "<0xFF>");
    EXPECT_EQ(model.trainer.model_type, SentencePieceModel::ModelType::bpe);
    EXPECT_TRUE(model.trainer.byte_fallback);
    EXPECT_EQ(model.trainer.pad_id, -1);
    EXPECT_EQ(model.normalizer.name, "identity");
    EXPECT_TRUE(model.normalizer.add_dummy_prefix);
    EXPECT_FALSE(model.normalizer.remove_extra_whitespaces);
    const SentencePieceTokenizer tok(model, "tokenizer.model");
    EXPECT_EQ(tok.bos_id, 1);
    EXPECT_EQ(tok.eos_id, 2);
  }
}

TEST_F(TrainSentencePiece, IsReproducibleByteForByte) {
  train_sentencepiece(tiny_corpus(), 700, dir_ / "a");
  train_sentencepiece(tiny_corpus(), 700, dir_ / "b");
  const std::string a = test::read_file(dir_ / "a/tokenizer.model");
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, test::read_file(dir_ / "b/tokenizer.model"));
  // The temporary folder's name must not leak into the file.
  EXPECT_EQ(a.find("bouquet-spm-"), std::string::npos);
}

TEST_F(TrainSentencePiece, TrainedTokenizerRoundTripsAnyText) {
  train_sentencepiece(tiny_corpus(), 512, dir_.path());
  const auto tok = SentencePieceTokenizer::load(dir_ / "tokenizer.model");
  const uint64_t seed = 7001;
  SCOPED_TRACE(fmt::format("seed {}", seed));
  core::Rng rng(seed);
  for (int i = 0; i < 300; ++i) {
    // U+2581 is SentencePiece's escaped space: it decodes as a space, by design, so it is left out.
    std::string text;
    const std::string raw = test::random_utf8(rng, 40);
    for (size_t at = 0; at < raw.size(); ++at) {
      if (std::string_view(raw).substr(at).starts_with("\xE2\x96\x81"))
        at += 2;
      else
        text.push_back(raw[at]);
    }
    ASSERT_EQ(tok->decode(tok->encode(text)), text) << "case " << i;
  }
  // Common words of the corpus are single pieces, so prose takes well under a token a character.
  const std::string prose = "The garden in early spring looks like nothing much.";
  EXPECT_LT(static_cast<double>(tok->encode(prose).size()), 0.6 * static_cast<double>(prose.size()));
}

TEST_F(TrainSentencePiece, ReportsWhatSpmTrainSaysWhenItFails) {
  try {
    train_sentencepiece(tiny_corpus(), 100, dir_.path());  // fewer pieces than characters + bytes
    FAIL() << "no error for a vocabulary too small";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("spm_train failed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Vocabulary size is smaller than required_chars"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(train_sentencepiece(tiny_corpus(), 100'000, dir_.path()), std::runtime_error);
  EXPECT_FALSE(fs::exists(dir_ / "tokenizer.model"));
}

TEST(TrainSentencePieceWithoutTool, SaysSpmTrainIsMissing) {
  TempDir dir;
  const char* old_path = std::getenv("PATH");
  const std::string saved = old_path ? old_path : "";
  setenv("PATH", dir.path().c_str(), 1);  // an empty folder: no spm_train anywhere
  try {
    train_sentencepiece(tiny_corpus(), 512, dir / "out");
    ADD_FAILURE() << "no error without spm_train";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("spm_train not found"), std::string::npos) << e.what();
  }
  setenv("PATH", saved.c_str(), 1);
}

}  // namespace
}  // namespace bouquet::gpu

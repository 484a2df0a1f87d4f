// SentencePiece tokenizer.model: hand-made models with ids worked out by hand, corrupt files, and
// (when /usr/bin/python3 has sentencepiece and spm_train is installed) exact agreement with
// libsentencepiece on BPE and unigram models, identity and nmt_nfkc normalization.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer_test_support.h"

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

using test::TempDir;
using Type = SentencePieceModel::PieceType;

constexpr std::string_view kSp = "\xE2\x96\x81";  // U+2581

// <unk> <s> </s>, then the 256 byte pieces (ids 3..258), then `normal` with their scores.
SentencePieceModel make_model(const std::vector<std::pair<std::string, float>>& normal, bool byte_fallback = true) {
  SentencePieceModel model;
  model.trainer.model_type = SentencePieceModel::ModelType::bpe;
  model.trainer.byte_fallback = byte_fallback;
  model.normalizer.name = "identity";
  model.normalizer.remove_extra_whitespaces = false;
  model.pieces.push_back({"<unk>", 0, Type::unknown});
  model.pieces.push_back({"<s>", 0, Type::control});
  model.pieces.push_back({"</s>", 0, Type::control});
  if (byte_fallback)
    for (int b = 0; b < 256; ++b) model.pieces.push_back({fmt::format("<0x{:02X}>", b), 0, Type::byte});
  for (const auto& [piece, score] : normal) model.pieces.push_back({piece, score, Type::normal});
  return model;
}

TokenId id_of(const SentencePieceTokenizer& tok, const std::string& piece) {
  const auto id = tok.piece_id(piece);
  EXPECT_TRUE(id.has_value()) << piece;
  return id.value_or(-1);
}

std::string sp(const std::string& rest) { return std::string(kSp) + rest; }

TEST(SentencePieceTokenizer, BpeMergesHighestScoringPairFirst) {
  // "▁the": the pair (h, e) scores best, then (▁, t), then (▁t, he).
  const SentencePieceTokenizer tok(make_model({{kSp.data(), -10},
                                               {"t", -11},
                                               {"h", -12},
                                               {"e", -13},
                                               {"a", -14},
                                               {"he", -1},
                                               {sp("t"), -2},
                                               {sp("the"), -3}}),
                                   "hand-made");
  EXPECT_EQ(tok.encode("the"), (std::vector<TokenId>{id_of(tok, sp("the"))}));
  EXPECT_EQ(tok.encode("hat"),
            (std::vector<TokenId>{id_of(tok, std::string(kSp)), id_of(tok, "h"), id_of(tok, "a"), id_of(tok, "t")}));
  // Spaces become U+2581 and are kept as they are (identity normalization, no whitespace removal).
  EXPECT_EQ(tok.encode(" the"), (std::vector<TokenId>{id_of(tok, std::string(kSp)), id_of(tok, sp("the"))}));
  EXPECT_EQ(tok.encode(""), std::vector<TokenId>{});
}

TEST(SentencePieceTokenizer, EqualScoresMergeLeftmostFirst) {
  const SentencePieceTokenizer tok(make_model({{kSp.data(), -10}, {"a", -11}, {"aa", -1}}), "hand-made");
  // ▁ a a a: the pairs (a, a) at positions 1 and 2 tie; the leftmost wins.
  EXPECT_EQ(tok.encode("aaa"), (std::vector<TokenId>{id_of(tok, std::string(kSp)), id_of(tok, "aa"), id_of(tok, "a")}));
}

TEST(SentencePieceTokenizer, UnknownCharactersFallBackToBytesOrOneUnk) {
  const SentencePieceTokenizer with_bytes(make_model({{kSp.data(), -10}, {"a", -11}}), "hand-made");
  // é is C3 A9; byte pieces start at id 3.
  EXPECT_EQ(with_bytes.encode("aé"),
            (std::vector<TokenId>{id_of(with_bytes, std::string(kSp)), id_of(with_bytes, "a"), 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(with_bytes.decode(with_bytes.encode("aé\n")), "aé\n");
  const SentencePieceTokenizer without(make_model({{kSp.data(), -10}, {"a", -11}}, false), "hand-made");
  // A run of unknown characters is a single <unk>, which decodes to " ⁇ ".
  EXPECT_EQ(without.encode("aéé"), (std::vector<TokenId>{3, 4, 0}));
  EXPECT_EQ(without.decode({3, 4, 0}), "a \xE2\x81\x87 ");
}

TEST(SentencePieceTokenizer, UserDefinedPiecesAreMatchedFirstAndNeverMerged) {
  SentencePieceModel model = make_model({{kSp.data(), -10}, {"a", -11}, {"b", -12}, {"ab", -1}});
  model.pieces.push_back({"<sep>", 0, Type::user_defined});
  model.pieces.push_back({"ab<", 5, Type::normal});  // would win if <sep> were split into characters
  const SentencePieceTokenizer tok(model, "hand-made");
  const TokenId sep = id_of(tok, "<sep>");
  EXPECT_EQ(tok.encode("ab<sep>ab"),
            (std::vector<TokenId>{id_of(tok, std::string(kSp)), id_of(tok, "ab"), sep, id_of(tok, "ab")}));
  // Control pieces are not matched in text: "<s>" is spelled out in bytes.
  EXPECT_EQ(tok.encode("<s>").size(), 4u);
}

TEST(SentencePieceTokenizer, DecodeSkipsControlsStripsTheDummyPrefixAndReassemblesBytes) {
  const SentencePieceTokenizer tok(make_model({{kSp.data(), -10}, {"a", -11}, {sp("a"), -1}}), "hand-made");
  const TokenId space_a = id_of(tok, sp("a"));
  const TokenId space = id_of(tok, std::string(kSp));
  EXPECT_EQ(tok.decode({1, space_a, space_a, 2}), "a a");
  // Only the first piece loses its space: "▁▁a" was "  a"'s dummy prefix plus one space.
  EXPECT_EQ(tok.decode({space, space_a}), " a");
  EXPECT_EQ(tok.decode({3 + 0xE2, 3 + 0x82, 3 + 0xAC, space_a}), "€ a");
  // A byte that does not complete a character becomes U+FFFD, as in SentencePiece.
  EXPECT_EQ(tok.decode({3 + 0xE2, 3 + 0x82, space_a}), "\xEF\xBF\xBD\xEF\xBF\xBD a");
  // Ids past the vocabulary decode to nothing.
  EXPECT_EQ(tok.decode({space_a, 100000, -1}), "a");
}

TEST(SentencePieceTokenizer, UnigramTakesTheBestScoringPath) {
  SentencePieceModel model =
      make_model({{kSp.data(), -1}, {"a", -5}, {"b", -5}, {"c", -5}, {"ab", -4}, {"bc", -3.5}, {sp("a"), -6}});
  model.trainer.model_type = SentencePieceModel::ModelType::unigram;
  const SentencePieceTokenizer tok(model, "hand-made");
  // ▁abc: ▁a + bc = -9.5 beats ▁ + ab + c = -10 and ▁a + b + c = -16; ▁ + a + bc ties at -9.5,
  // and the node after "a" keeps ▁a, the candidate offered first.
  EXPECT_EQ(tok.encode("abc"), (std::vector<TokenId>{id_of(tok, sp("a")), id_of(tok, "bc")}));
  EXPECT_EQ(tok.decode(tok.encode("abc")), "abc");
}

TEST(SentencePieceModelReader, RoundTripsThroughTheWireFormat) {
  SentencePieceModel model = make_model({{"x", -1.5f}});
  model.trainer.bos_id = -1;
  model.trainer.unk_surface = "?";
  const SentencePieceModel back = parse_sentencepiece_model(serialize_sentencepiece_model(model), "mem");
  ASSERT_EQ(back.pieces.size(), model.pieces.size());
  EXPECT_EQ(back.pieces.back().piece, "x");
  EXPECT_EQ(back.pieces.back().score, -1.5f);
  EXPECT_EQ(back.pieces[3].type, Type::byte);
  EXPECT_EQ(back.trainer.bos_id, -1);  // negative int32 travels as a 10-byte varint
  EXPECT_EQ(back.trainer.unk_surface, "?");
  EXPECT_FALSE(back.normalizer.remove_extra_whitespaces);
}

TEST(SentencePieceModelReader, CorruptFilesGiveAnErrorNamingTheFile) {
  TempDir dir;
  const std::string bytes = serialize_sentencepiece_model(make_model({{"x", -1}}));
  const auto expect_error = [&](const std::string& data, const std::string& what) {
    test::write_file(dir / "tokenizer.model", data);
    try {
      SentencePieceTokenizer::load(dir / "tokenizer.model");
      ADD_FAILURE() << "no error for " << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
    }
  };
  expect_error(bytes.substr(0, bytes.size() / 2), "a file cut in half");
  expect_error(bytes.substr(0, 3), "a file cut after 3 bytes");
  expect_error("", "an empty file");
  expect_error(std::string("\x0f\x01\x02", 3), "a field with wire type 7");
  expect_error("{\"model\": {}}", "a JSON file");
  EXPECT_THROW(SentencePieceTokenizer::load(dir / "missing.model"), std::runtime_error);
}

TEST(SentencePieceTokenizer, RefusesModelsItCannotEncodeExactly) {
  SentencePieceModel no_unk = make_model({{"x", -1}});
  no_unk.pieces[0].type = Type::normal;
  EXPECT_THROW(SentencePieceTokenizer(no_unk, "m"), std::runtime_error);
  SentencePieceModel word = make_model({{"x", -1}});
  word.trainer.model_type = SentencePieceModel::ModelType::word;
  EXPECT_THROW(SentencePieceTokenizer(word, "m"), std::runtime_error);
  SentencePieceModel duplicate = make_model({{"x", -1}, {"x", -2}});
  EXPECT_THROW(SentencePieceTokenizer(duplicate, "m"), std::runtime_error);
}

// ---- Agreement with libsentencepiece (python) ----

constexpr std::string_view kPythonScript = R"(
import json, sys
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
with open(sys.argv[2]) as requests, open(sys.argv[3], "w") as out:
    for line in requests:
        kind, arg = line.rstrip("\n").split(" ", 1) if " " in line else (line.strip(), "")
        if kind == "E":
            ids = sp.encode(bytes.fromhex(arg))  # bytes, so malformed UTF-8 is compared too
        else:
            ids = [int(x) for x in arg.split(",") if x]
        out.write(json.dumps({"ids": ids, "text": sp.decode(ids).encode("utf-8").hex()}) + "\n")
)";

struct Reference {
  std::vector<TokenId> ids;
  std::string text_hex;
};

// Asks python's sentencepiece for the ids of each text (kind "E") or the text of each id list ("D").
std::vector<Reference> ask_python(const fs::path& model, const std::vector<std::string>& requests) {
  TempDir dir;
  test::write_file(dir / "ref.py", kPythonScript);
  std::string lines;
  for (const auto& request : requests) lines += request + "\n";
  test::write_file(dir / "requests.txt", lines);
  const std::string command =
      fmt::format("/usr/bin/python3 {} {} {} {} 2> {}", (dir / "ref.py").string(), model.string(),
                  (dir / "requests.txt").string(), (dir / "answers.txt").string(), (dir / "errors.txt").string());
  if (std::system(command.c_str()) != 0)
    throw std::runtime_error("python reference failed: " + command + "\n" + test::read_file(dir / "errors.txt"));
  std::vector<Reference> out;
  std::istringstream answers(test::read_file(dir / "answers.txt"));
  for (std::string line; std::getline(answers, line);) {
    const auto json = nlohmann::json::parse(line);
    out.push_back({json["ids"].get<std::vector<TokenId>>(), json["text"].get<std::string>()});
  }
  if (out.size() != requests.size()) throw std::runtime_error("python reference answered too few lines");
  return out;
}

std::vector<std::string> comparison_texts(uint64_t seed) {
  std::vector<std::string> texts = {"Hello world",
                                    "hello  world",
                                    "  leading spaces",
                                    "trailing spaces  ",
                                    " ",
                                    "",
                                    "\n",
                                    "a\nb\n\nc",
                                    "tab\there",
                                    "café naïve résumé Ångström",
                                    "日本語のテキスト",
                                    "中文字符测试",
                                    "emoji 😀🎉👍🏽 done",
                                    "1234567890 3.14159 2024-01-01",
                                    "ＡＢＣ full width １２３",
                                    "ﬁ ligature ½ ⅷ x²",
                                    "<s> </s> <unk>",
                                    "   multiple   spaces   ",
                                    "mixed\r\nnewlines",
                                    "\xE2\x96\x81"
                                    "already escaped",
                                    "\xC2\xA0nbsp\xE3\x80\x80ideo",
                                    "Съешь же ещё этих мягких французских булок",
                                    "e\xCC\x81 combining",
                                    "\xEF\xBB\xBF"
                                    "bom",
                                    "The garden in early spring looks like nothing much.",
                                    "Servers fail. A laptop closes its lid."};
  core::Rng rng(seed);
  for (int i = 0; i < 150; ++i) {
    texts.push_back(test::random_utf8(rng, 30));
    if (i % 6 == 0)
      texts.back().insert(rng.below(texts.back().size() + 1), 1, static_cast<char>(0x80 + rng.below(0x80)));
  }
  // Prose-like strings from the training text's words, so that long merges are exercised.
  std::vector<std::string> words;
  std::istringstream corpus{std::string(tiny_corpus())};
  for (std::string word; corpus >> word;) words.push_back(word);
  for (int i = 0; i < 150; ++i) {
    std::string text;
    for (uint64_t n = 1 + rng.below(12); n > 0; --n) text += (text.empty() ? "" : " ") + words[rng.below(words.size())];
    texts.push_back(text);
  }
  return texts;
}

void expect_agreement(const fs::path& model_file, uint64_t seed) {
  SCOPED_TRACE(fmt::format("model {}, seed {} (rerun with BOUQUET_TOKENIZER_SEED={})", model_file.filename().string(),
                           seed, seed));
  const auto tok = SentencePieceTokenizer::load(model_file);
  const auto texts = comparison_texts(seed);
  std::vector<std::string> requests;
  for (const auto& text : texts) requests.push_back("E " + test::to_hex(text));
  // Random id sequences, heavy on the pieces decoding treats specially.
  core::Rng rng(seed ^ 0x5eed);
  std::vector<std::vector<TokenId>> id_lists;
  for (int i = 0; i < 300; ++i) {
    std::vector<TokenId> ids;
    for (uint64_t n = rng.below(10); n > 0; --n)
      ids.push_back(rng.bernoulli(0.5) ? static_cast<TokenId>(rng.below(std::min<int64_t>(tok->vocab_size(), 260)))
                                       : static_cast<TokenId>(rng.below(tok->vocab_size())));
    std::string line = "D ";
    for (const auto id : ids) line += fmt::format("{},", id);
    requests.push_back(line);
    id_lists.push_back(ids);
  }
  const auto answers = ask_python(model_file, requests);
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok->encode(texts[i]);
    if (ids != answers[i].ids || test::to_hex(tok->decode(ids)) != answers[i].text_hex) {
      if (++mismatches <= 5) ADD_FAILURE() << "encode/decode differs from sentencepiece for '" << texts[i] << "'";
    }
  }
  for (size_t i = 0; i < id_lists.size(); ++i) {
    if (test::to_hex(tok->decode(id_lists[i])) != answers[texts.size() + i].text_hex && ++mismatches <= 10)
      ADD_FAILURE() << "decode differs from sentencepiece for id list " << i;
  }
  EXPECT_EQ(mismatches, 0);
}

uint64_t test_seed() {
  const char* env = std::getenv("BOUQUET_TOKENIZER_SEED");
  const uint64_t seed = env ? std::strtoull(env, nullptr, 10) : 20240611;
  std::printf("tokenizer comparison seed %llu (set BOUQUET_TOKENIZER_SEED to change)\n",
              static_cast<unsigned long long>(seed));
  return seed;
}

class SentencePieceAgreement : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!python_ready_) GTEST_SKIP() << "/usr/bin/python3 with sentencepiece, or spm_train, is not installed";
  }
  // Trains with spm_train directly, for the model kinds train_sentencepiece does not make.
  fs::path train(const std::string& name, const std::string& flags) {
    test::write_file(dir_ / "corpus.txt", tiny_corpus());
    const std::string command = fmt::format(
        "cd {} && spm_train --input=corpus.txt --model_prefix={} --num_threads=1 --minloglevel=2 {} "
        "> {}.log 2>&1",
        dir_.path().string(), name, flags, name);
    if (std::system(command.c_str()) != 0) throw std::runtime_error("spm_train failed: " + command);
    return dir_ / (name + ".model");
  }
  TempDir dir_;
  const bool python_ready_ = test::python_sentencepiece_available() && test::program_on_path("spm_train");
};

TEST_F(SentencePieceAgreement, TinyBpeModelsOfSeveralSizes) {
  const uint64_t seed = test_seed();
  for (const int64_t vocab : {512, 3000}) {
    const fs::path out = dir_ / fmt::format("bpe{}", vocab);
    train_sentencepiece(tiny_corpus(), vocab, out);
    expect_agreement(out / "tokenizer.model", seed);
  }
}

TEST_F(SentencePieceAgreement, NfkcNormalizationWithoutByteFallback) {
  expect_agreement(train("bpe_nfkc", "--model_type=bpe --vocab_size=600"), test_seed());
}

TEST_F(SentencePieceAgreement, UserDefinedAndControlSymbolsWithCaseFolding) {
  expect_agreement(train("bpe_ud",
                         "--model_type=bpe --vocab_size=700 --byte_fallback "
                         "--user_defined_symbols='<sep>,foo,the' --control_symbols='<ctl>' "
                         "--normalization_rule_name=nfkc_cf"),
                   test_seed());
}

TEST_F(SentencePieceAgreement, UnusedPiecesAreSplitBackIntoThePiecesTheyWereMergedFrom) {
  train_sentencepiece(tiny_corpus(), 1000, dir_.path());
  SentencePieceModel model = parse_sentencepiece_model(test::read_file(dir_ / "tokenizer.model"), "tokenizer.model");
  // Every seventh merged piece becomes UNUSED: segmentation still merges through it, then splits it.
  int unused = 0;
  for (size_t i = 300; i < model.pieces.size(); i += 7) {
    model.pieces[i].type = SentencePieceModel::PieceType::unused;
    ++unused;
  }
  ASSERT_GT(unused, 50);
  test::write_file(dir_ / "unused.model", serialize_sentencepiece_model(model));
  expect_agreement(dir_ / "unused.model", test_seed());
}

TEST_F(SentencePieceAgreement, UnigramModels) {
  const uint64_t seed = test_seed();
  expect_agreement(train("uni_nfkc", "--model_type=unigram --vocab_size=800"), seed);
  expect_agreement(train("uni_id",
                         "--model_type=unigram --vocab_size=900 --byte_fallback "
                         "--normalization_rule_name=identity --remove_extra_whitespaces=false "
                         "--user_defined_symbols='<sep>'"),
                   seed);
}

}  // namespace
}  // namespace bouquet::gpu

// load_tokenizer: which file a folder's tokenizer comes from, BOS/EOS/add_bos from the folder's
// configs, and one clear error naming the file for each broken folder.
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

namespace fs = std::filesystem;

using Json = nlohmann::json;
using test::TempDir;
using test::write_file;

// A byte-level tokenizer.json with ids 0..255 for bytes and a BOS-adding template for 256.
Json byte_level_config(bool with_template) {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_unicode()[b]] = b;
  Json config = {{"added_tokens", Json::array({{{"id", 256}, {"content", "<|begin_of_text|>"}, {"special", true}},
                                               {{"id", 257}, {"content", "<|end_of_text|>"}, {"special", true}}})},
                 {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                 {"decoder", {{"type", "ByteLevel"}}},
                 {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
  if (with_template)
    config["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", Json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {256}}}}}}};
  return config;
}

// A Llama 2 style tokenizer.model: <unk> <s> </s>, bytes, and a few pieces.
std::string sentencepiece_bytes() {
  SentencePieceModel model;
  model.trainer.model_type = SentencePieceModel::ModelType::bpe;
  model.trainer.byte_fallback = true;
  model.normalizer.name = "identity";
  model.normalizer.remove_extra_whitespaces = false;
  model.pieces = {{"<unk>", 0, SentencePieceModel::PieceType::unknown},
                  {"<s>", 0, SentencePieceModel::PieceType::control},
                  {"</s>", 0, SentencePieceModel::PieceType::control}};
  for (int b = 0; b < 256; ++b)
    model.pieces.push_back({fmt::format("<0x{:02X}>", b), 0, SentencePieceModel::PieceType::byte});
  model.pieces.push_back({"\xE2\x96\x81", -1, SentencePieceModel::PieceType::normal});
  model.pieces.push_back({"a", -2, SentencePieceModel::PieceType::normal});
  return serialize_sentencepiece_model(model);
}

std::string error_of(const fs::path& dir) {
  try {
    load_tokenizer(dir);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(LoadTokenizer, PrefersTokenizerJsonAndFallsBackToTokenizerModel) {
  TempDir dir;
  write_file(dir / "tokenizer.model", sentencepiece_bytes());
  auto sp = load_tokenizer(dir.path());
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(sp.get()), nullptr);
  EXPECT_EQ(sp->bos_id, 1);
  EXPECT_EQ(sp->eos_id, 2);
  EXPECT_TRUE(sp->add_bos);

  write_file(dir / "tokenizer.json", byte_level_config(true).dump());
  auto bpe = load_tokenizer(dir.path());
  EXPECT_NE(dynamic_cast<BpeTokenizer*>(bpe.get()), nullptr);
  EXPECT_EQ(bpe->bos_id, 256);  // from the post-processor template
  EXPECT_TRUE(bpe->add_bos);
  EXPECT_FALSE(bpe->eos_id.has_value());

  // Llama 2 folders also ship a SentencePiece-style tokenizer.json; the tokenizer.model serves.
  Json metaspace = byte_level_config(false);
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}};
  write_file(dir / "tokenizer.json", metaspace.dump());
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(load_tokenizer(dir.path()).get()), nullptr);
  fs::remove(dir / "tokenizer.model");
  EXPECT_NE(error_of(dir.path()).find("Metaspace"), std::string::npos);
}

TEST(LoadTokenizer, FolderConfigsSetBosEosAndAddBos) {
  TempDir dir;
  write_file(dir / "tokenizer.json", byte_level_config(false).dump());
  auto plain = load_tokenizer(dir.path());
  EXPECT_FALSE(plain->add_bos);  // no template, no config: GPT-2 and BLOOM add nothing
  EXPECT_FALSE(plain->bos_id.has_value());

  write_file(dir / "config.json", R"({"bos_token_id": 256, "eos_token_id": [257, 3]})");
  auto from_config = load_tokenizer(dir.path());
  EXPECT_EQ(from_config->bos_id, 256);
  EXPECT_EQ(from_config->eos_id, 257);

  write_file(dir / "tokenizer_config.json",
             R"({"add_bos_token": true, "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>"},
                 "eos_token": "<|end_of_text|>"})");
  write_file(dir / "config.json", R"({"bos_token_id": 1, "eos_token_id": 2})");
  auto from_tokenizer_config = load_tokenizer(dir.path());
  EXPECT_TRUE(from_tokenizer_config->add_bos);
  EXPECT_EQ(from_tokenizer_config->bos_id, 256);  // the token strings win over config.json's ids
  EXPECT_EQ(from_tokenizer_config->eos_id, 257);

  write_file(dir / "tokenizer_config.json", R"({"add_bos_token": false})");
  write_file(dir / "tokenizer.json", byte_level_config(true).dump());
  EXPECT_FALSE(load_tokenizer(dir.path())->add_bos);
}

TEST(LoadTokenizer, BrokenFoldersGiveOneErrorNamingTheFile) {
  TempDir dir;
  EXPECT_NE(error_of(dir.path()).find("no tokenizer.json or tokenizer.model"), std::string::npos);

  const std::string model = sentencepiece_bytes();
  write_file(dir / "tokenizer.model", model.substr(0, model.size() - 7));
  EXPECT_NE(error_of(dir.path()).find("tokenizer.model: not a valid SentencePiece model"), std::string::npos)
      << error_of(dir.path());
  write_file(dir / "tokenizer.model", model);

  write_file(dir / "tokenizer_config.json", "{\"add_bos_token\": tru");
  EXPECT_NE(error_of(dir.path()).find("tokenizer_config.json: not valid JSON"), std::string::npos);
  write_file(dir / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  EXPECT_NE(error_of(dir.path()).find("tokenizer_config.json: bos_token '<nope>'"), std::string::npos);
  write_file(dir / "tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_NE(error_of(dir.path()).find("tokenizer_config.json"), std::string::npos);
  fs::remove(dir / "tokenizer_config.json");

  write_file(dir / "config.json", "not json");
  EXPECT_NE(error_of(dir.path()).find("config.json: not valid JSON"), std::string::npos);
  write_file(dir / "config.json", R"({"eos_token_id": "two"})");
  EXPECT_NE(error_of(dir.path()).find("config.json: eos_token_id"), std::string::npos);
  // Ids past the vocabulary (or negative) would index the embeddings out of range.
  write_file(dir / "config.json", R"({"bos_token_id": 1000000000})");
  EXPECT_NE(error_of(dir.path()).find("config.json: bos_token_id 1000000000 is outside the vocabulary"),
            std::string::npos);
  write_file(dir / "config.json", R"({"eos_token_id": [-1]})");
  EXPECT_NE(error_of(dir.path()).find("config.json: eos_token_id -1 is outside the vocabulary"), std::string::npos);
  fs::remove(dir / "config.json");

  write_file(dir / "tokenizer.json", "{\"model\": ");
  EXPECT_NE(error_of(dir.path()).find("tokenizer.json: not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace bouquet::gpu

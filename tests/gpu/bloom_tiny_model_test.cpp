// make-tiny-model --family bloom: a folder laid out as BLOOM's, with a byte-level BPE
// tokenizer.json that round-trips any text, is reproducible, and drives generate end to end.
#include "gpu/generate_local.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

class BloomTinyModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_dir("bloom_tiny_model"));
    TinyModelConfig config;
    config.family = "bloom";
    config.out = *dir_;
    config.layers = 2;
    config.heads = 6;
    config.hidden = 48;
    config.vocab = 500;
    make_tiny_model(config);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path* dir_;
};

fs::path* BloomTinyModel::dir_ = nullptr;

TEST_F(BloomTinyModel, FolderIsLaidOutAsBloom) {
  for (const char* file : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                           "tokenizer_config.json", "special_tokens_map.json"}) {
    EXPECT_TRUE(fs::exists(*dir_ / file)) << file;
  }
  EXPECT_FALSE(fs::exists(*dir_ / "tokenizer.model"));
  const auto config = nlohmann::json::parse(std::ifstream(*dir_ / "config.json"));
  EXPECT_EQ(config["model_type"], "bloom");
  EXPECT_EQ(config["architectures"][0], "BloomForCausalLM");
  EXPECT_EQ(config["n_layer"], 2);
  EXPECT_EQ(config["n_head"], 6);
  EXPECT_EQ(config["vocab_size"], 500);
  const auto tokenizer = load_tokenizer(*dir_);
  EXPECT_EQ(tokenizer->vocab_size(), 500) << "exactly --vocab ids";
  EXPECT_FALSE(tokenizer->add_bos) << "BLOOM's tokenizer adds no BOS";
  EXPECT_EQ(tokenizer->bos_id, 1);
  EXPECT_EQ(tokenizer->eos_id, 2);
  const auto tokenizer_json = nlohmann::json::parse(std::ifstream(*dir_ / "tokenizer.json"));
  EXPECT_EQ(tokenizer_json["model"]["vocab"]["<pad>"], 3);
  EXPECT_EQ(tokenizer_json["model"]["vocab"]["\xC4\xA0"], 4 + ' ') << "byte tokens in byte order";
}

TEST_F(BloomTinyModel, TokenizerRoundTripsAndCompressesItsCorpus) {
  const auto tokenizer = load_tokenizer(*dir_);
  const std::string prose(tiny_corpus().substr(0, 2000));
  const std::vector<TokenId> ids = tokenizer->encode(prose);
  EXPECT_EQ(tokenizer->decode(ids), prose);
  EXPECT_LT(ids.size(), prose.size() / 2) << "merges learnt on this corpus shorten it";
  for (const std::string text :
       {"na\xC3\xAFve caf\xC3\xA9, \xE6\x9D\xB1\xE4\xBA\xAC!  \xF0\x9F\x99\x82", "\x01\x7F tabs\tand\nnewlines", ""}) {
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), text);
  }
  EXPECT_EQ(tokenizer->encode("</s>"), std::vector<TokenId>{2}) << "special tokens are found";
}

TEST(BloomTokenizerTraining, SameCorpusGivesTheSameFile) {
  const fs::path a = testing::fresh_dir("bpe_a");
  const fs::path b = testing::fresh_dir("bpe_b");
  train_byte_level_bpe(tiny_corpus(), 300, a);
  train_byte_level_bpe(tiny_corpus(), 300, b);
  EXPECT_EQ(read_file(a / "tokenizer.json"), read_file(b / "tokenizer.json"));
  EXPECT_THROW(train_byte_level_bpe(tiny_corpus(), 260, a), std::runtime_error) << "no room for a merge";
  EXPECT_THROW(train_byte_level_bpe("ab ab", 300, a), std::runtime_error) << "the corpus runs out of pairs";
}

TEST_F(BloomTinyModel, GeneratesTextFromAPrompt) {
  GenerateConfig config;
  config.model = dir_->string();
  config.local = true;
  config.device = "cpu";
  config.prompt = "The swarm";
  config.max_new_tokens = 8;
  config.ignore_eos = true;
  const GenerationResult result = generate_local(config);
  const auto tokenizer = load_tokenizer(*dir_);
  EXPECT_EQ(result.prompt_ids, tokenizer->encode("The swarm")) << "no BOS in front";
  EXPECT_EQ(result.ids.size(), 8u);
  EXPECT_EQ(result.text, tokenizer->decode(result.ids));
}

// The command line, as a user runs it.
TEST(BloomCommand, MakeTinyModelThenGenerateJson) {
  const fs::path dir = testing::fresh_dir("bloom_cli");
  int status = 0;
  std::string out = testing::run_command(
      fmt::format("'{}' make-tiny-model --family bloom --out '{}' --layers 2 --heads 6 --hidden 48 "
                  "--vocab 400 --shards 2 --dtype bf16 --tensor-prefix transformer. --seed 9",
                  BOUQUET_BINARY, dir.string()),
      &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("bloom 2 blocks, hidden 48, vocab 400, bfloat16"));
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  out = testing::run_command(fmt::format("'{}' generate --model '{}' --local --prompt 'Hello there' "
                                         "--max-new-tokens 5 --ignore-eos --json",
                                         BOUQUET_BINARY, dir.string()),
                             &status);
  ASSERT_EQ(status, 0) << out;
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["ids"].size(), 5u);
  EXPECT_TRUE(json["text"].is_string());
  out = testing::run_command(fmt::format("'{}' make-tiny-model --family bloom --out '{}' "
                                         "--rope-scaling llama3",
                                         BOUQUET_BINARY, dir.string()),
                             &status);
  EXPECT_EQ(status, 1);
  EXPECT_THAT(out, ::testing::HasSubstr("bloom uses ALiBi"));
}

}  // namespace
}  // namespace bouquet::gpu

// make-tiny-model and generate --local, end to end: a folder with a working tokenizer, text in
// and text out matching the numpy reference, EOS handling, seeded sampling, and the command line.
#include "gpu/errors.h"
#include "gpu/generate_local.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

// One tiny model with its tokenizer for the whole suite (training the tokenizer takes a while).
class Generate : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_dir("generate_model"));
    TinyModelConfig config = testing::small_tiny(*dir_);
    config.vocab = 400;
    make_tiny_model(config);
  }
  static void TearDownTestSuite() { delete dir_; }

  static GenerateConfig base() {
    GenerateConfig config;
    config.model = dir_->string();
    config.local = true;
    config.device = "cpu";
    config.max_new_tokens = 16;
    return config;
  }

  static fs::path* dir_;
};

fs::path* Generate::dir_ = nullptr;

TEST_F(Generate, TinyModelFolderIsComplete) {
  for (const char* file : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model",
                           "tokenizer_config.json", "special_tokens_map.json"}) {
    EXPECT_TRUE(fs::exists(*dir_ / file)) << file;
  }
  const auto tokenizer = load_tokenizer(*dir_);
  EXPECT_EQ(tokenizer->vocab_size(), 400) << "exactly --vocab pieces";
  EXPECT_TRUE(tokenizer->add_bos);
  EXPECT_EQ(tokenizer->bos_id, 1);
  EXPECT_EQ(tokenizer->eos_id, 2);
  const auto config = nlohmann::json::parse(std::ifstream(*dir_ / "tokenizer_config.json"));
  EXPECT_EQ(config["add_bos_token"], true);
}

TEST_F(Generate, TextPromptMatchesRefLlama) {
  const std::string why = testing::reference_unavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  const std::string prompt = "The quick brown fox";
  int status = 0;
  const std::string out =
      testing::run_command(fmt::format("/usr/bin/python3 '{}' '{}' '{}' 16",
                                       (testing::reference_dir() / "ref_llama.py").string(), dir_->string(), prompt),
                           &status);
  ASSERT_EQ(status, 0) << out;
  GenerateConfig config = base();
  config.prompt = prompt;
  config.ignore_eos = true;
  const GenerationResult result = generate_local(config);
  EXPECT_THAT(out, ::testing::HasSubstr(fmt::format("prompt ids: [{}]", fmt::join(result.prompt_ids, ", "))));
  EXPECT_THAT(out, ::testing::HasSubstr(fmt::format("greedy ids: {}", fmt::join(result.ids, " "))));
}

TEST_F(Generate, StreamedTextEqualsDecodedText) {
  GenerateConfig config = base();
  config.prompt = "Once upon a time";
  config.ignore_eos = true;
  std::string streamed;
  const GenerationResult result = generate_local(config, [&](std::string_view piece) { streamed += piece; });
  EXPECT_EQ(result.ids.size(), 16u);
  EXPECT_EQ(streamed, result.text);
  EXPECT_EQ(result.prompt_ids.front(), 1) << "BOS first, as tokenizer_config.json asks";
  EXPECT_GT(result.tokens_per_s, 0);
}

TEST_F(Generate, StopsAtEosUnlessIgnored) {
  GenerateConfig config = base();
  config.prompt_ids = "1,45,300,12";
  config.ignore_eos = true;
  const auto free_run = generate_local(config).ids;
  // Declare the 6th generated token the model's EOS: generation must stop right there.
  const TokenId eos = free_run[5];
  const size_t first = std::find(free_run.begin(), free_run.end(), eos) - free_run.begin();
  const fs::path copy = testing::fresh_dir("generate_eos");
  for (const auto& entry : fs::directory_iterator(*dir_)) {
    fs::copy_file(entry.path(), copy / entry.path().filename());
  }
  auto model_config = nlohmann::json::parse(std::ifstream(copy / "config.json"));
  model_config["eos_token_id"] = eos;
  std::ofstream(copy / "config.json") << model_config.dump();
  config.model = copy.string();
  config.ignore_eos = false;
  const GenerationResult stopped = generate_local(config);
  EXPECT_EQ(stopped.stop_reason, "eos");
  EXPECT_EQ(stopped.ids, std::vector<TokenId>(free_run.begin(), free_run.begin() + first + 1));
  config.ignore_eos = true;
  EXPECT_EQ(generate_local(config).ids, free_run);
}

TEST_F(Generate, SeededSamplingReproduces) {
  GenerateConfig config = base();
  config.prompt_ids = "1,45,300";
  config.ignore_eos = true;
  config.temperature = 1.0;
  config.top_p = 0.95;
  config.seed = 5;
  SCOPED_TRACE("seeds 5 and 6");
  const auto a = generate_local(config).ids;
  EXPECT_EQ(generate_local(config).ids, a);
  config.seed = 6;
  EXPECT_NE(generate_local(config).ids, a);
}

TEST_F(Generate, BadRequestsAreClearErrors) {
  GenerateConfig config = base();
  EXPECT_THROW(generate_local(config), InputError) << "neither --prompt nor --prompt-ids";
  config.prompt_ids = "1,x,3";
  EXPECT_THROW(generate_local(config), InputError);
  config.prompt_ids = "1,9999";
  EXPECT_THROW(generate_local(config), InputError) << "id past the vocabulary";
  EXPECT_EQ(parse_prompt_ids("1, 2 3"), (std::vector<TokenId>{1, 2, 3}));
}

// The command names are a contract (README, scripts): run them through the binary once.
TEST(GenerateCommand, MakeTinyModelThenGenerateJson) {
  const fs::path dir = testing::fresh_dir("cli_model");
  int status = 0;
  std::string out = testing::run_command(
      fmt::format("'{}' make-tiny-model --family llama --out '{}' --layers 2 --vocab 400 --shards 2 "
                  "--dtype bf16 --tie-embeddings --rope-scaling llama3 --seed 9",
                  BOUQUET_BINARY, dir.string()),
      &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  out = testing::run_command(fmt::format("'{}' generate --model '{}' --local --prompt 'Hello there' "
                                         "--max-new-tokens 5 --ignore-eos --json",
                                         BOUQUET_BINARY, dir.string()),
                             &status);
  ASSERT_EQ(status, 0) << out;
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["ids"].size(), 5u);
  EXPECT_GT(json["prompt_ids"].size(), 1u);
  EXPECT_TRUE(json["text"].is_string());
  EXPECT_GT(json["tokens_per_s"].get<double>(), 0);
  out = testing::run_command(
      fmt::format("'{}' generate --model '{}/nowhere' --local --prompt-ids 1", BOUQUET_BINARY, dir.string()), &status);
  EXPECT_EQ(status, 1);
  EXPECT_THAT(out, ::testing::HasSubstr("bouquet: error:"));
}

}  // namespace
}  // namespace bouquet::gpu

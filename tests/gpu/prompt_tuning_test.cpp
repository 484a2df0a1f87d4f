// Prompt tuning's pieces on the client: the JSONL loader names the file and line of a malformed
// example, batches target completion tokens only, a prompts file round-trips and is refused for
// another model, and training with the blocks in this process lowers the loss.
#include "gpu/prompt_tuning.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/prompt_data.h"
#include "gpu/prompt_file.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path write_file(const fs::path& dir, const std::string& name, const std::string& text) {
  const fs::path path = dir / name;
  std::ofstream(path) << text;
  return path;
}

TEST(FinetuneData, ReadsExamplesAndSkipsBlankLines) {
  const fs::path dir = testing::fresh_dir("data_ok");
  const auto examples = load_finetune_data(
      write_file(dir, "ok.jsonl",
                 "{\"prompt\": \"a\", \"completion\": \" b\"}\n\n  \n{\"prompt\": \"\", \"completion\": \"c\"}\n"));
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0].prompt, "a");
  EXPECT_EQ(examples[0].completion, " b");
  EXPECT_EQ(examples[1].completion, "c");
}

TEST(FinetuneData, MalformedLinesNameTheFileAndTheLine) {
  const fs::path dir = testing::fresh_dir("data_bad");
  const std::string good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"prompt\": \"a\", \"completion\": ", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {"{\"prompt\": \"a\"}", "field \"completion\" is missing or not a string"},
      {"{\"prompt\": 3, \"completion\": \"b\"}", "field \"prompt\" is missing or not a string"},
      {"{\"prompt\": \"a\", \"completion\": \"\"}", "\"completion\" is empty"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path path =
        write_file(dir, "bad" + std::to_string(i) + ".jsonl", good + "\n" + cases[i].first + "\n" + good);
    try {
      load_finetune_data(path);
      ADD_FAILURE() << "accepted " << cases[i].first;
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr(path.string() + ":3: "));
      EXPECT_THAT(e.what(), HasSubstr(cases[i].second));
    }
  }
  EXPECT_THROW(load_finetune_data(write_file(dir, "empty.jsonl", "\n")), InputError);
  EXPECT_THROW(load_finetune_data(dir / "missing.jsonl"), InputError);
}

TEST(FinetuneData, BatchesTargetCompletionTokensOnly) {
  const std::vector<TokenizedExample> examples{{{1, 10, 11}, {20, 21}}, {{1, 12}, {22}}};
  const TrainingBatch batch = make_batch(examples, {0, 1}, 0);
  const auto i = kIgnoreTarget;
  EXPECT_TRUE(at::equal(
      batch.ids, at::tensor(std::vector<int64_t>{1, 10, 11, 20, 21, 1, 12, 22, 0, 0}, at::kLong).reshape({2, 5})));
  EXPECT_TRUE(at::equal(batch.targets,
                        at::tensor(std::vector<int64_t>{i, i, 20, 21, i, i, 22, i, i, i}, at::kLong).reshape({2, 5})));
}

class PromptFile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_dir("prompt_file"));
    TinyModelConfig config = testing::small_tiny(*dir_ / "model");
    model_ = new ModelConfig(write_tiny_checkpoint(config));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static TunedPrompts deep() {
    TunedPrompts p;
    p.mode = TuningMode::deep_ptune;
    p.pre_seq_len = 3;
    p.model_fingerprint = "00112233aabbccdd";
    p.input_prompts = at::arange(3 * 64, at::kFloat).reshape({3, 64});
    p.deep_prompts = at::arange(4 * 3 * 64, at::kFloat).reshape({4, 3, 64}) / 7;
    return p;
  }
  static fs::path* dir_;
  static ModelConfig* model_;
};
fs::path* PromptFile::dir_ = nullptr;
ModelConfig* PromptFile::model_ = nullptr;

TEST_F(PromptFile, RoundTripsWithModeAndPrefix) {
  const fs::path path = *dir_ / "deep.safetensors";
  save_prompts(path, deep());
  const TunedPrompts back = load_prompts(path, "00112233aabbccdd", *model_);
  EXPECT_EQ(back.mode, TuningMode::deep_ptune);
  EXPECT_EQ(back.pre_seq_len, 3);
  EXPECT_TRUE(at::equal(back.input_prompts, deep().input_prompts));
  EXPECT_TRUE(at::equal(back.deep_prompts, deep().deep_prompts));
}

// Prompts trained before fingerprints were version 2 carry the model's version-1 fingerprint: they
// still load for that model (asked only on a mismatch), and not for another.
TEST_F(PromptFile, PromptsTaggedWithTheModelsVersion1FingerprintStillLoad) {
  const fs::path path = *dir_ / "v1.safetensors";
  save_prompts(path, deep());
  int asked = 0;
  const auto legacy = [&](std::string fingerprint) {
    return [&asked, fingerprint] {
      ++asked;
      return fingerprint;
    };
  };
  EXPECT_EQ(load_prompts(path, "00112233aabbccdd", *model_, legacy("unused")).pre_seq_len, 3);
  EXPECT_EQ(asked, 0) << "a version-2 match does not re-read the weights";
  EXPECT_EQ(load_prompts(path, "ffffffffffffffff", *model_, legacy("00112233aabbccdd")).pre_seq_len, 3);
  EXPECT_EQ(asked, 1);
  EXPECT_THROW(load_prompts(path, "ffffffffffffffff", *model_, legacy("0123456789abcdef")), InputError);
}

TEST_F(PromptFile, PromptsForAnotherModelAreRefused) {
  const fs::path path = *dir_ / "other.safetensors";
  save_prompts(path, deep());
  try {
    load_prompts(path, "ffffffffffffffff", *model_);
    ADD_FAILURE() << "loaded prompts made for another model";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("trained for model 00112233aabbccdd, but this model is ffffffffffffffff"));
    EXPECT_THAT(e.what(), HasSubstr(path.string()));
  }
  // Same fingerprint but shapes that do not fit (a hand-edited or foreign file).
  ModelConfig wider = *model_;
  wider.hidden_size = 128;
  EXPECT_THROW(load_prompts(path, "00112233aabbccdd", wider), ModelFileError);
  // A safetensors file that is not a prompts file.
  EXPECT_THROW(load_prompts(*dir_ / "model" / "model.safetensors", "00112233aabbccdd", *model_), ModelFileError);
}

TEST(PromptTuning, LocalTrainingLowersTheLoss) {
  const fs::path dir = testing::fresh_dir("tuning_local");
  write_tiny_checkpoint(testing::small_tiny(dir));
  const ClientHead head({dir, "f32", "cpu"});
  const SpanRunner blocks({dir, 0, -1, "f32", "cpu"});
  LocalPassChain chain(blocks);
  const std::vector<TokenizedExample> examples{{{1, 10, 11}, {20}}, {{1, 12, 13}, {21}}, {{1, 14, 15}, {22}}};
  const TrainingBatch batch = make_batch(examples, {0, 1, 2}, 0);
  for (TuningMode mode : {TuningMode::ptune, TuningMode::deep_ptune}) {
    std::printf("mode %s, seed 1 (fixed)\n", std::string(to_string(mode)).c_str());
    PromptTuner tuner(head, mode, 4, 1, 0.1);
    const double first = tuner.evaluate(chain, batch).loss;
    for (int i = 0; i < 20; ++i) tuner.train_step(chain, batch);
    EXPECT_LT(tuner.evaluate(chain, batch).loss, first / 2) << to_string(mode);
  }
}

TEST(PromptTuning, MinibatchTrainingIsReproducibleAndWritesLoadablePrompts) {
  const fs::path dir = testing::fresh_dir("tuning_minibatch");
  TinyModelConfig tiny = testing::small_tiny(dir / "model");
  make_tiny_model(tiny);
  const fs::path data = write_file(dir, "data.jsonl",
                                   "{\"prompt\": \"one\", \"completion\": \"two\"}\n"
                                   "{\"prompt\": \"three\", \"completion\": \"four\"}\n"
                                   "{\"prompt\": \"five\", \"completion\": \"six\"}\n");
  const auto tokenizer = load_tokenizer(tiny.out);
  const ClientHead head({tiny.out, "f32", "cpu"});
  const SpanRunner blocks({tiny.out, 0, -1, "f32", "cpu"});
  LocalPassChain chain(blocks);
  FinetuneConfig config;
  config.local = true;
  config.model = tiny.out.string();
  config.mode = "deep_ptune";
  config.pre_seq_len = 2;
  config.data = data.string();
  config.steps = 5;
  config.batch_size = 2;  // 3 examples: steps cross epoch boundaries
  config.seed = 9;
  std::printf("seed %llu (fixed)\n", static_cast<unsigned long long>(config.seed));
  config.out = (dir / "a.safetensors").string();
  std::vector<int64_t> seen;
  const FinetuneReport a = finetune(config, head, *tokenizer, chain, "fp", [&](int64_t step, int64_t steps, double) {
    seen.push_back(step);
    EXPECT_EQ(steps, 5);
  });
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  config.out = (dir / "b.safetensors").string();
  const FinetuneReport b = finetune(config, head, *tokenizer, chain, "fp");
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.examples, 3);
  // Each step reports its time and the shape of the pass the blocks saw: 2 sequences of the
  // prefix plus the longer example's tokens.
  const auto tokenized = tokenize_examples(*tokenizer, load_finetune_data(config.data));
  ASSERT_EQ(a.step_s.size(), 5u);
  for (size_t i = 0; i < a.step_s.size(); ++i) {
    EXPECT_GT(a.step_s[i], 0.0);
    EXPECT_EQ(a.step_batch[i], 2);
    EXPECT_GE(a.step_positions[i], 2 + 2);  // the prefix and at least a prompt and a completion token
  }
  int64_t longest = 0;
  for (const auto& e : tokenized) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(e.prompt_ids.size() + e.completion_ids.size()));
  }
  EXPECT_EQ(*std::max_element(a.step_positions.begin(), a.step_positions.end()), 2 + longest);
  const TunedPrompts pa = load_prompts(dir / "a.safetensors", "fp", head.model_config());
  const TunedPrompts pb = load_prompts(dir / "b.safetensors", "fp", head.model_config());
  EXPECT_TRUE(at::equal(pa.deep_prompts, pb.deep_prompts));
  EXPECT_TRUE(at::equal(pa.input_prompts, pb.input_prompts));
  EXPECT_GT(pa.deep_prompts.abs().max().item<double>(), 0.0) << "deep prompts moved from zero";
}

}  // namespace
}  // namespace bouquet::gpu

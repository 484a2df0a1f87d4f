// Bouquet against the independent numpy reference (../shared/reference): checkpoints written by
// make_tiny_llama.py and by make-tiny-model must give ref_llama.py's greedy ids. Skipped when
// ../shared is absent.
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

const std::vector<TokenId> kPrompt = {1, 45, 300, 12, 99, 7, 260};
constexpr int64_t kNewTokens = 12;

#define SKIP_WITHOUT_REFERENCE()                              \
  do {                                                        \
    const std::string why = testing::reference_unavailable(); \
    if (!why.empty()) GTEST_SKIP() << why;                    \
  } while (0)

class ReferenceCheckpoint : public ::testing::TestWithParam<const char*> {};

TEST_P(ReferenceCheckpoint, GreedyIdsMatchRefLlama) {
  SKIP_WITHOUT_REFERENCE();
  const fs::path dir = testing::fresh_dir(fmt::format("ref_{}", GetParam()));
  testing::write_reference_model(dir, GetParam());
  testing::expect_matches_reference(dir, dir, kPrompt, kNewTokens);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ReferenceCheckpoint, ::testing::Values("F32", "F16", "BF16"));

class OwnTinyModel : public ::testing::TestWithParam<const char*> {};

TEST_P(OwnTinyModel, GreedyIdsMatchRefLlama) {
  SKIP_WITHOUT_REFERENCE();
  const fs::path dir = testing::fresh_dir(fmt::format("own_{}", GetParam()));
  TinyModelConfig config = testing::small_tiny(dir);
  config.dtype = GetParam();
  write_tiny_checkpoint(config);
  fs::copy_file(testing::shared_test_tokenizer(), dir / "tokenizer.model");
  testing::expect_matches_reference(dir, dir, kPrompt, kNewTokens);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OwnTinyModel, ::testing::Values("f32", "f16", "bf16"));

// ref_llama.py reads a single model.safetensors: the sharded copy of the same weights must give
// the reference's ids too.
TEST(OwnTinyModelSharded, GreedyIdsMatchUnshardedAndRefLlama) {
  SKIP_WITHOUT_REFERENCE();
  const fs::path single = testing::fresh_dir("own_single");
  const fs::path sharded = testing::fresh_dir("own_sharded");
  TinyModelConfig config = testing::small_tiny(single);
  write_tiny_checkpoint(config);
  config.out = sharded;
  config.shards = 3;
  write_tiny_checkpoint(config);
  ASSERT_TRUE(fs::exists(sharded / "model.safetensors.index.json"));
  ASSERT_TRUE(fs::exists(sharded / "model-00003-of-00003.safetensors"));
  fs::copy_file(testing::shared_test_tokenizer(), single / "tokenizer.model");
  testing::expect_matches_reference(sharded, single, kPrompt, kNewTokens);
}

}  // namespace
}  // namespace bouquet::gpu

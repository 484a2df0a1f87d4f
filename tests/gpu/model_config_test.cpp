// config.json parsing: the Llama fields and their defaults, and one clear error naming the file
// and the field for each bad config.
#include "gpu/model_config.h"
#include "gpu/errors.h"
#include "gpu/rope.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

namespace bouquet::gpu {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const char* kLlama2 = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
  "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
  "vocab_size": 32000, "rms_norm_eps": 1e-05, "max_position_embeddings": 4096,
  "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16", "rope_scaling": null})";

std::string error_of(const std::string& text) {
  try {
    parse_model_config(text, "/models/x/config.json");
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ModelConfig, ReadsLlama2WithDefaults) {
  const ModelConfig c = parse_model_config(kLlama2, "config.json");
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_kv_heads, 32) << "kv heads default to heads";
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.torch_dtype, "float16");
}

TEST(ModelConfig, ReadsLlama3RopeScalingAndEosList) {
  const ModelConfig c = parse_model_config(R"({
    "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "rope_theta": 500000.0, "tie_word_embeddings": true,
    "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})",
                                           "config.json");
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
}

// Real configs say "no padding token" as null or -1 (older Llama exports): both load.
TEST(ModelConfig, PadTokenNullOrMinusOneMeansNone) {
  for (const std::string pad : {R"("pad_token_id": null)", R"("pad_token_id": -1)"}) {
    std::string text = kLlama2;
    text.insert(text.rfind('}'), ", " + pad);
    EXPECT_NO_THROW(parse_model_config(text, "config.json")) << pad;
  }
}

TEST(ModelConfig, NotJsonNamesTheFile) {
  EXPECT_THAT(error_of("{\"model_type\": \"llama\", "),
              AllOf(HasSubstr("/models/x/config.json"), HasSubstr("not valid JSON")));
}

TEST(ModelConfig, MissingFieldNamesFileAndField) {
  std::string text = kLlama2;
  text.replace(text.find("\"hidden_size\": 4096,"), 20, "");
  EXPECT_THAT(error_of(text), AllOf(HasSubstr("/models/x/config.json"), HasSubstr("'hidden_size' is missing")));
}

TEST(ModelConfig, WrongTypesAndInconsistentSizes) {
  std::string text = kLlama2;
  text.replace(text.find("\"vocab_size\": 32000"), 19, "\"vocab_size\": \"many\"");
  EXPECT_THAT(error_of(text), HasSubstr("'vocab_size' is not an integer"));
  text = kLlama2;
  text.replace(text.find("\"num_attention_heads\": 32"), 25, "\"num_attention_heads\": 32, \"num_key_value_heads\": 5");
  EXPECT_THAT(error_of(text), HasSubstr("'num_key_value_heads' (5) does not divide"));
  EXPECT_THAT(error_of(R"({"model_type": "gpt9"})"),
              AllOf(HasSubstr("'model_type'"), HasSubstr("gpt9"), HasSubstr("llama")));
  text = kLlama2;
  text.replace(text.find("\"rope_scaling\": null"), 20, R"("rope_scaling": {"rope_type": "yarn", "factor": 4})");
  EXPECT_THAT(error_of(text), AllOf(HasSubstr("'rope_scaling'"), HasSubstr("yarn")));
  text = kLlama2;
  text.replace(text.find("\"rope_scaling\": null"), 20, R"("rope_scaling": {"rope_type": "llama3"})");
  EXPECT_THAT(error_of(text), HasSubstr("'rope_scaling.factor' is missing"));
}

// Each value a hostile or corrupt config.json could hold is refused naming the field, before it
// sizes an allocation or indexes the embedding.
TEST(ModelConfig, OutOfRangeValuesNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("bos_token_id": 1000000000)", "'bos_token_id' is 1000000000, outside [0, vocab_size 32000)"},
      {R"("bos_token_id": -1)", "'bos_token_id' is -1, outside [0, vocab_size 32000)"},
      {R"("bos_token_id": 1e9)", "'bos_token_id' is not an integer"},
      {R"("eos_token_id": [2, 32000])", "'eos_token_id' is 32000, outside [0, vocab_size 32000)"},
      {R"("pad_token_id": 40000)", "'pad_token_id' is 40000, outside [0, vocab_size 32000)"},
      {R"("rope_theta": -10000.0)", "'rope_theta' is -10000, outside [1, 1e+12]"},
      {R"("rope_theta": 0)", "'rope_theta' is 0, outside"},
      {R"("rope_theta": 1e400)", "not valid JSON"},
      {R"("rms_norm_eps": -1e-6)", "'rms_norm_eps' is -1e-06, outside"},
      {R"("max_position_embeddings": -5)", "'max_position_embeddings' is -5, outside [1, 1073741824]"},
      {R"("max_position_embeddings": 0)", "'max_position_embeddings' is 0, outside"},
      {R"("hidden_size": 0)", "'hidden_size' is 0, outside [1, 1048576]"},
      {R"("hidden_size": -4096)", "'hidden_size' is -4096, outside"},
      {R"("hidden_size": 18446744073709551615)", "'hidden_size' is 18446744073709551615, outside"},
      {R"("intermediate_size": 4611686018427387904)", "'intermediate_size' is 4611686018427387904, outside"},
      {R"("num_hidden_layers": 0)", "'num_hidden_layers' is 0, outside [1, 65536]"},
      {R"("num_attention_heads": 0)", "'num_attention_heads' is 0, outside"},
      {R"("num_attention_heads": 24)", "'hidden_size' (4096) is not a multiple of num_attention_heads (24)"},
      {R"("num_key_value_heads": 0)", "'num_key_value_heads' is 0, outside"},
      {R"("num_key_value_heads": 5)", "'num_key_value_heads' (5) does not divide"},
      {R"("vocab_size": 0)", "'vocab_size' is 0, outside [1, 16777216]"},
      {R"("head_dim": 3)", "'head_dim' must be positive and even"},
      {R"("head_dim": -2)", "'head_dim' is -2, outside"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": -8, "low_freq_factor": 1, "high_freq_factor": 4,
          "original_max_position_embeddings": 8192})",
       "'rope_scaling.factor' is -8, outside"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
          "original_max_position_embeddings": -1})",
       "'rope_scaling.original_max_position_embeddings' is -1"},
  };
  for (const auto& [field, reason] : cases) {
    // A later duplicate key wins in nlohmann's parser: append the bad value after the good ones.
    std::string text = kLlama2;
    text.insert(text.rfind('}'), ", " + field);
    EXPECT_THAT(error_of(text), AllOf(HasSubstr("/models/x/config.json"), HasSubstr(reason))) << field;
  }
  // BLOOM names its sizes differently; the message uses the name the file used.
  const std::string bloom = R"({"model_type": "bloom", "n_embed": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100)";
  EXPECT_THAT(error_of(bloom + R"(, "seq_length": 0})"), HasSubstr("'seq_length' is 0, outside"));
  EXPECT_THAT(error_of(bloom + R"(, "n_head": -4})"), HasSubstr("'n_head' is -4, outside"));
  EXPECT_THAT(error_of(bloom + R"(, "layer_norm_epsilon": -1})"), HasSubstr("'layer_norm_epsilon' is -1, outside"));
  EXPECT_THAT(error_of(bloom + R"(, "bos_token_id": 100})"), HasSubstr("'bos_token_id' is 100, outside"));
  EXPECT_THAT(error_of(bloom + "}"), HasSubstr("no error"));
}

// Llama 3.1's published rule, written out independently: wavelengths above
// original_context / low_freq_factor are slowed by `factor`, those below original_context /
// high_freq_factor kept, and the band in between interpolated linearly in original_context /
// wavelength.
TEST(RopeFrequencies, FollowPublishedLlama3Formula) {
  const RopeScaling s{"llama3", 8.0, 1.0, 4.0, 8192};
  const int64_t head_dim = 128;
  const double theta = 500000.0;
  const auto scaled = rope_inverse_frequencies(head_dim, theta, s);
  const auto plain = rope_inverse_frequencies(head_dim, theta, std::nullopt);
  ASSERT_EQ(scaled.size(), 64u);
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < scaled.size(); ++i) {
    const double base = std::pow(theta, -2.0 * i / head_dim);
    EXPECT_DOUBLE_EQ(plain[i], base);
    const double wavelength = 2 * std::numbers::pi / base;
    double expected;
    if (wavelength < 8192 / 4.0) {
      expected = base, ++kept;
    } else if (wavelength > 8192 / 1.0) {
      expected = base / 8.0, ++divided;
    } else {
      const double t = (8192 / wavelength - 1.0) / (4.0 - 1.0);
      expected = (1 - t) * base / 8.0 + t * base, ++blended;
    }
    EXPECT_NEAR(scaled[i], expected, 1e-15 * base) << "frequency " << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

}  // namespace
}  // namespace bouquet::gpu

// config.json parsing: the Llama fields and their defaults, and one clear error naming the file
// and the field for each bad config.
#include "gpu/errors.h"
#include "gpu/model_config.h"
#include "gpu/rope.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

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

TEST(ModelConfig, NotJsonNamesTheFile) {
  EXPECT_THAT(error_of("{\"model_type\": \"llama\", "),
              AllOf(HasSubstr("/models/x/config.json"), HasSubstr("not valid JSON")));
}

TEST(ModelConfig, MissingFieldNamesFileAndField) {
  std::string text = kLlama2;
  text.replace(text.find("\"hidden_size\": 4096,"), 20, "");
  EXPECT_THAT(error_of(text), AllOf(HasSubstr("/models/x/config.json"),
                                    HasSubstr("'hidden_size' is missing")));
}

TEST(ModelConfig, WrongTypesAndInconsistentSizes) {
  std::string text = kLlama2;
  text.replace(text.find("\"vocab_size\": 32000"), 19, "\"vocab_size\": \"many\"");
  EXPECT_THAT(error_of(text), HasSubstr("'vocab_size' is not an integer"));
  text = kLlama2;
  text.replace(text.find("\"num_attention_heads\": 32"), 25,
               "\"num_attention_heads\": 32, \"num_key_value_heads\": 5");
  EXPECT_THAT(error_of(text), HasSubstr("'num_key_value_heads' (5) does not divide"));
  EXPECT_THAT(error_of(R"({"model_type": "gpt9"})"),
              AllOf(HasSubstr("'model_type'"), HasSubstr("gpt9"), HasSubstr("llama")));
  text = kLlama2;
  text.replace(text.find("\"rope_scaling\": null"), 20,
               R"("rope_scaling": {"rope_type": "yarn", "factor": 4})");
  EXPECT_THAT(error_of(text), AllOf(HasSubstr("'rope_scaling'"), HasSubstr("yarn")));
  text = kLlama2;
  text.replace(text.find("\"rope_scaling\": null"), 20, R"("rope_scaling": {"rope_type": "llama3"})");
  EXPECT_THAT(error_of(text), HasSubstr("'rope_scaling.factor' is missing"));
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

// BLOOM's layout traps checked by hand: ALiBi slopes for power-of-two and other head counts, the
// per-head order of the fused query_key_value, config.json's alternative field names, and tensor
// names with and without the "transformer." prefix.
#include "gpu/bloom.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/model_config.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

TEST(AlibiSlopes, EightHeadsHalveFromOneHalf) {
  // 8 is a power of two: ratio and first slope 2^(-8/8) = 1/2.
  EXPECT_THAT(alibi_slopes(8),
              ElementsAreArray({1.0 / 2, 1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32, 1.0 / 64, 1.0 / 128, 1.0 / 256}));
}

TEST(AlibiSlopes, SixHeadsTakeFourThenOddPowersOfTheEightHeadSeries) {
  // Largest power of two <= 6 is 4: 2^(-8/4) = 1/4 and its powers 1/4, 1/16, 1/64, 1/256. The two
  // heads left take the 1st and 3rd slopes of the 8-head series (1/2, 1/4, 1/8, ...): 1/2, 1/8.
  EXPECT_THAT(alibi_slopes(6), ElementsAreArray({1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2, 1.0 / 8}));
}

TEST(AlibiSlopes, OneAndTwelveHeads) {
  EXPECT_THAT(alibi_slopes(1), ElementsAreArray({1.0 / 256}));
  // 12: the 8-head series, then slopes 1, 3, 5, 7 of the 16-head series 2^(-k/2).
  const std::vector<double> twelve = alibi_slopes(12);
  ASSERT_EQ(twelve.size(), 12u);
  EXPECT_DOUBLE_EQ(twelve[7], 1.0 / 256);
  EXPECT_DOUBLE_EQ(twelve[8], std::sqrt(0.5));
  EXPECT_DOUBLE_EQ(twelve[9], std::pow(0.5, 1.5));
  EXPECT_DOUBLE_EQ(twelve[11], std::pow(0.5, 3.5));
}

// A query_key_value weight whose rows, read per head as [q, k, v], copy the head's slice of the
// input for q, double it for k and negate it for v: the split must recover exactly x, 2x, -x.
TEST(FusedQkv, RowsArePerHeadQueryKeyValue) {
  const int64_t heads = 3, head_dim = 4, hidden = heads * head_dim;
  at::Tensor weight = at::zeros({heads, 3, head_dim, hidden}, at::kDouble);
  const double scale[3] = {1.0, 2.0, -1.0};
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t which = 0; which < 3; ++which) {
      for (int64_t d = 0; d < head_dim; ++d) weight[h][which][d][h * head_dim + d] = scale[which];
    }
  }
  weight = weight.reshape({3 * hidden, hidden});
  const at::Tensor x = at::arange(1, 2 * hidden + 1, at::kDouble).reshape({1, 2, hidden});
  const at::Tensor fused = at::linear(x, weight);
  const SplitQkv split = split_fused_qkv(fused, heads, head_dim);
  const at::Tensor per_head = x.view({1, 2, heads, head_dim}).transpose(1, 2);  // [1, heads, 2, d]
  EXPECT_TRUE(at::equal(split.query, per_head));
  EXPECT_TRUE(at::equal(split.key, 2 * per_head));
  EXPECT_TRUE(at::equal(split.value, -per_head));
  // The trap: reading the rows as three runs [all q; all k; all v] gives something else.
  const at::Tensor wrong_query = fused.narrow(-1, 0, hidden).view({1, 2, heads, head_dim}).transpose(1, 2);
  EXPECT_FALSE(at::equal(wrong_query, per_head));
}

ModelConfig parse(const std::string& text) { return parse_model_config(text, "bloom/config.json"); }

TEST(BloomConfig, ReadsBloom560mFields) {
  // BigScience's bloom-560m config.json, fields as published.
  const ModelConfig c = parse(R"({
    "apply_residual_connection_post_layernorm": false, "attention_dropout": 0.0,
    "architectures": ["BloomForCausalLM"], "attention_softmax_in_fp32": true,
    "bias_dropout_fusion": true, "bos_token_id": 1, "eos_token_id": 2, "hidden_dropout": 0.0,
    "hidden_size": 1024, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
    "masked_softmax_fusion": true, "model_type": "bloom", "n_head": 16, "n_inner": null,
    "n_layer": 24, "offset_alibi": 100, "pad_token_id": 3, "pretraining_tp": 1,
    "skip_bias_add": true, "skip_bias_add_qkv": false, "slow_but_exact": false,
    "unk_token_id": 0, "use_cache": true, "vocab_size": 250880})");
  EXPECT_EQ(c.family, "bloom");
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 4096);
  EXPECT_EQ(c.vocab_size, 250880);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
}

TEST(BloomConfig, ReadsTransformersAttributeNames) {
  const ModelConfig c = parse(R"({"model_type": "bloom", "n_embed": 48, "num_hidden_layers": 3,
                                  "num_attention_heads": 6, "vocab_size": 300})");
  EXPECT_EQ(c.hidden_size, 48);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 6);
  EXPECT_EQ(c.head_dim, 8);
}

TEST(BloomConfig, BadFieldsNameTheFileAndField) {
  const auto message = [](const std::string& text) {
    try {
      parse(text);
    } catch (const ModelFileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(R"({"model_type": "bloom", "hidden_size": 64, "n_head": 4, "vocab_size": 9})"),
              HasSubstr("bloom/config.json: field 'n_layer' is missing"));
  EXPECT_THAT(message(R"({"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 6})"),
              HasSubstr("field 'hidden_size' (64) is not a multiple of n_head (6)"));
  EXPECT_THAT(message(R"({"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4,
                          "apply_residual_connection_post_layernorm": true})"),
              HasSubstr("field 'apply_residual_connection_post_layernorm' true is not supported"));
}

TinyModelConfig tiny_bloom(const fs::path& dir) {
  TinyModelConfig config;
  config.family = "bloom";
  config.out = dir;
  config.layers = 2;
  config.heads = 6;
  config.hidden = 48;
  config.seed = 5;
  return config;
}

TEST(BloomTensorNames, BothPrefixesLoadTheSameModel) {
  TinyModelConfig plain = tiny_bloom(testing::fresh_dir("bloom_plain"));
  TinyModelConfig prefixed = tiny_bloom(testing::fresh_dir("bloom_prefixed"));
  prefixed.tensor_prefix = "transformer.";
  write_tiny_checkpoint(plain);
  write_tiny_checkpoint(prefixed);
  const SafetensorsFile plain_file(plain.out / "model.safetensors");
  const SafetensorsFile prefixed_file(prefixed.out / "model.safetensors");
  EXPECT_NE(plain_file.find("h.1.self_attention.query_key_value.weight"), nullptr);
  EXPECT_EQ(plain_file.find("transformer.h.1.self_attention.query_key_value.weight"), nullptr);
  EXPECT_NE(prefixed_file.find("transformer.h.1.self_attention.query_key_value.weight"), nullptr);
  EXPECT_NE(prefixed_file.find("transformer.word_embeddings.weight"), nullptr);
  EXPECT_EQ(prefixed_file.find("word_embeddings.weight"), nullptr);
  EXPECT_EQ(plain_file.find("lm_head.weight"), nullptr) << "the LM head is tied";

  const std::vector<TokenId> ids = {1, 200, 31, 7, 450};
  at::NoGradGuard no_grad;
  const auto logits = [&](const fs::path& dir) {
    const ClientHead head({dir, "f32", "cpu"});
    const SpanRunner span({dir, 0, -1, "f32", "cpu"});
    return head.logits(span.forward(head.embed(ids)));
  };
  EXPECT_TRUE(at::equal(logits(plain.out), logits(prefixed.out)));
}

TEST(BloomTensorNames, MissingTensorNamesBothSpellings) {
  const TinyModelConfig config = tiny_bloom(testing::fresh_dir("bloom_missing"));
  write_tiny_checkpoint(config);
  std::vector<NamedTensor> kept;
  {
    const SafetensorsFile file(config.out / "model.safetensors");
    for (const auto& [name, info] : file.tensors()) {
      if (name != "h.1.input_layernorm.bias") kept.push_back({name, file.read(name)});
    }
  }
  write_safetensors(config.out / "model.safetensors", kept, DType::F32);
  EXPECT_NO_THROW(SpanRunner({config.out, 0, 1, "f32", "cpu"}));
  try {
    SpanRunner({config.out, 1, 2, "f32", "cpu"});
    ADD_FAILURE() << "block 1 loaded without its input_layernorm.bias";
  } catch (const ModelFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.safetensors: missing tensor 'h.1.input_layernorm.bias' "
                                    "(or 'transformer.h.1.input_layernorm.bias')"));
  }
}

TEST(BloomTinyConfig, RefusesOptionsBloomDoesNotHave) {
  TinyModelConfig config = tiny_bloom(testing::fresh_dir("bloom_refused"));
  config.rope_scaling = "llama3";
  EXPECT_THROW(tiny_model_config(config), InputError);
  config.rope_scaling = "";
  config.tensor_prefix = "model.";
  EXPECT_THROW(tiny_model_config(config), InputError);
  config.family = "llama";
  config.tensor_prefix = "transformer.";
  EXPECT_THROW(tiny_model_config(config), InputError);
}

}  // namespace
}  // namespace bouquet::gpu

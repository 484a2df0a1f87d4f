// The span runner on tiny BLOOM models: KV-cached decoding equals full recomputation (ALiBi's bias
// follows the cached keys' positions), sequences batched in one session equal each alone, chained
// spans equal one span, a span reads only its blocks (with either tensor prefix, sharded or not),
// and the cache-less forward's gradients match finite differences.
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/safetensors.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

const std::vector<TokenId> kIds = {1, 17, 230, 5, 77, 400, 3, 128, 64, 9, 311, 42};

TinyModelConfig tiny_bloom(const fs::path& dir, int64_t heads = 6) {
  TinyModelConfig config;
  config.family = "bloom";
  config.out = dir;
  config.layers = 4;
  config.heads = heads;
  config.hidden = 8 * heads;
  config.seed = 13;
  return config;
}

at::Tensor recomputed_logits(const ClientHead& head, const SpanRunner& span, const std::vector<TokenId>& ids) {
  at::NoGradGuard no_grad;
  return head.logits(span.forward(head.embed(ids)));
}

// A session fed `prefill` tokens and then one token per step.
at::Tensor cached_logits(const ClientHead& head, SpanRunner& span, const std::vector<TokenId>& ids, int64_t prefill) {
  span.open_session(42, 1, static_cast<int64_t>(ids.size()));
  std::vector<at::Tensor> outputs;
  outputs.push_back(span.step(42, head.embed(std::vector<TokenId>(ids.begin(), ids.begin() + prefill))));
  for (size_t i = prefill; i < ids.size(); ++i) {
    outputs.push_back(span.step(42, head.embed(std::vector<TokenId>{ids[i]})));
  }
  span.close_session(42);
  return head.logits(at::cat(outputs, 1));
}

class BloomCachedDecoding : public ::testing::TestWithParam<int64_t> {};

TEST_P(BloomCachedDecoding, EqualsFullRecomputation) {
  const fs::path dir = testing::fresh_dir(fmt::format("bloom_cached_{}", GetParam()));
  write_tiny_checkpoint(tiny_bloom(dir, GetParam()));
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner span({dir, 0, -1, "f32", "cpu"});
  const at::Tensor full = recomputed_logits(head, span, kIds);
  for (int64_t prefill : {1, 5, 12}) {
    const at::Tensor cached = cached_logits(head, span, kIds, prefill);
    EXPECT_TRUE(at::allclose(cached, full, 1e-4, 1e-4))
        << "prefill " << prefill << ", max difference " << (cached - full).abs().max().item<float>();
    EXPECT_TRUE(at::equal(cached.argmax(-1), full.argmax(-1))) << "prefill " << prefill;
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, BloomCachedDecoding, ::testing::Values(4, 6, 8));

// ALiBi gives every key position its own bias: a block that ignored positions would make the last
// token's output independent of the order of the tokens before it.
TEST(BloomSpanRunner, OutputDependsOnTheOrderOfEarlierTokens) {
  const fs::path dir = testing::fresh_dir("bloom_order");
  write_tiny_checkpoint(tiny_bloom(dir));
  const ClientHead head({dir, "f32", "cpu"});
  const SpanRunner span({dir, 0, -1, "f32", "cpu"});
  const at::Tensor forward = recomputed_logits(head, span, {17, 230, 5, 77});
  const at::Tensor swapped = recomputed_logits(head, span, {230, 17, 5, 77});
  EXPECT_GT((forward.select(1, 3) - swapped.select(1, 3)).abs().max().item<float>(), 1e-3);
}

TEST(BloomSpanRunner, BatchedSequencesEqualEachAlone) {
  const fs::path dir = testing::fresh_dir("bloom_batch");
  write_tiny_checkpoint(tiny_bloom(dir));
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner span({dir, 0, -1, "f32", "cpu"});
  const std::vector<TokenId> other = {1, 99, 4, 250, 61, 7, 300, 12, 8, 500, 2, 33};
  const at::Tensor both = at::cat({head.embed(kIds), head.embed(other)}, 0);
  span.open_session(1, 2, 20);
  const at::Tensor prefill = span.step(1, both.narrow(1, 0, 8));
  const at::Tensor next = span.step(1, both.narrow(1, 8, 4));
  const at::Tensor batched = at::cat({prefill, next}, 1);
  at::NoGradGuard no_grad;
  for (int64_t s = 0; s < 2; ++s) {
    const at::Tensor alone = span.forward(both.narrow(0, s, 1));
    EXPECT_TRUE(at::allclose(batched.narrow(0, s, 1), alone, 1e-4, 1e-4)) << "sequence " << s;
  }
}

TEST(BloomSpanRunner, ChainedSpansEqualOneSpan) {
  const fs::path dir = testing::fresh_dir("bloom_chained");
  write_tiny_checkpoint(tiny_bloom(dir));
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner whole({dir, 0, -1, "f32", "cpu"});
  SpanRunner front({dir, 0, 1, "f32", "cpu"});
  SpanRunner middle({dir, 1, 3, "f32", "cpu"});
  SpanRunner back({dir, 3, 4, "f32", "cpu"});
  const at::Tensor x = head.embed(kIds);
  for (SpanRunner* s : {&whole, &front, &middle, &back}) s->open_session(7, 1, 16);
  EXPECT_TRUE(at::allclose(whole.step(7, x), back.step(7, middle.step(7, front.step(7, x))), 1e-5, 1e-5));
  const at::Tensor next = head.embed(std::vector<TokenId>{33});
  EXPECT_TRUE(at::allclose(whole.step(7, next), back.step(7, middle.step(7, front.step(7, next))), 1e-5, 1e-5));
  EXPECT_EQ(testing::engine_greedy_ids(dir, kIds, 10, "f32", 1), testing::engine_greedy_ids(dir, kIds, 10, "f32", 4));
}

class BloomSpanLoading : public ::testing::TestWithParam<const char*> {};

TEST_P(BloomSpanLoading, LoadsOnlyItsBlocksAndTheHeadNoBlock) {
  const std::string prefix = GetParam();
  const fs::path dir = testing::fresh_dir(fmt::format("bloom_bytes_{}", prefix.size()));
  TinyModelConfig config = tiny_bloom(dir);
  config.layers = 8;
  config.tensor_prefix = prefix;
  write_tiny_checkpoint(config);
  const SafetensorsFile file(dir / "model.safetensors");
  uint64_t block_bytes = 0, block3_bytes = 0;
  for (const auto& [name, info] : file.tensors()) {
    if (name.starts_with(prefix + "h.")) block_bytes += info.size_bytes();
    if (name.starts_with(prefix + "h.3.")) block3_bytes += info.size_bytes();
  }
  ASSERT_GT(block3_bytes, 0u);
  const SpanRunner span({dir, 3, 4, "f32", "cpu"});
  EXPECT_EQ(span.checkpoint_bytes_read(), block3_bytes);
  EXPECT_NEAR(static_cast<double>(span.checkpoint_bytes_read()) / block_bytes, 1.0 / 8, 1e-9);
  EXPECT_EQ(span.weight_bytes(), block3_bytes) << "f32 in, f32 held";

  const ClientHead head({dir, "f32", "cpu"});
  for (const auto& name : head.tensors_read()) EXPECT_FALSE(name.starts_with(prefix + "h.")) << name;
  // Embeddings, their LayerNorm (weight, bias), the final LayerNorm (weight, bias); the LM head is
  // the embedding matrix.
  EXPECT_EQ(head.tensors_read().size(), 5u);
}

INSTANTIATE_TEST_SUITE_P(Prefixes, BloomSpanLoading, ::testing::Values("", "transformer."));

TEST(BloomSpanRunner, ShardedSpanOpensOnlyItsShards) {
  const fs::path dir = testing::fresh_dir("bloom_bytes_sharded");
  TinyModelConfig config = tiny_bloom(dir);
  config.shards = 4;
  config.tensor_prefix = "transformer.";
  write_tiny_checkpoint(config);
  const SpanRunner before({dir, 3, 4, "f32", "cpu"});
  fs::resize_file(dir / "model-00001-of-00004.safetensors", 5);
  const SpanRunner span({dir, 3, 4, "f32", "cpu"});
  EXPECT_EQ(span.checkpoint_bytes_read(), before.checkpoint_bytes_read());
  EXPECT_THROW(SpanRunner({dir, 0, 1, "f32", "cpu"}), ModelFileError);
}

// In f64 the cache-less forward's input gradient agrees with central finite differences.
TEST(BloomSpanRunner, ForwardGradientsMatchFiniteDifferences) {
  const fs::path dir = testing::fresh_dir("bloom_grad");
  TinyModelConfig config = tiny_bloom(dir);
  config.layers = 2;
  write_tiny_checkpoint(config);
  const ClientHead head({dir, "f32", "cpu"});
  const at::Tensor x0 = head.embed(std::vector<TokenId>{1, 50, 9, 300}).to(at::kDouble);
  const at::Tensor weights = at::linspace(-1, 1, x0.numel(), at::kDouble).reshape(x0.sizes());
  const SpanRunner exact({dir, 0, -1, "f64", "cpu"});
  const at::Tensor gradient = exact.backward(x0, weights);
  const at::Tensor direction = at::cos(at::arange(x0.numel(), at::kDouble)).reshape(x0.sizes());
  const double h = 1e-5;
  at::NoGradGuard no_grad;
  const double plus = (exact.forward(x0 + h * direction) * weights).sum().item<double>();
  const double minus = (exact.forward(x0 - h * direction) * weights).sum().item<double>();
  const double numeric = (plus - minus) / (2 * h);
  const double analytic = (gradient * direction).sum().item<double>();
  EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(analytic)));
  EXPECT_GT(std::abs(analytic), 1e-3) << "a gradient this small would prove little";
}

}  // namespace
}  // namespace bouquet::gpu

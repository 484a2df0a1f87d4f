// The span runner on project tiny models: KV-cached decoding equals full recomputation, chained
// spans equal one span, a span reads only its blocks, the cache-less forward carries gradients,
// and bad input gets a clear InputError.
#include "gpu/span_runner.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/safetensors.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::vector<TokenId> kIds = {1, 17, 230, 5, 77, 400, 3, 128, 64, 9};

// Logits of every position of `ids`, computed by a cache-less forward over the whole sequence.
at::Tensor recomputed_logits(const ClientHead& head, const SpanRunner& span, const std::vector<TokenId>& ids) {
  at::NoGradGuard no_grad;
  return head.logits(span.forward(head.embed(ids)));
}

// Same, fed to a session as a prefill of `prefill` tokens and then one token per step.
at::Tensor cached_logits(const ClientHead& head, SpanRunner& span, const std::vector<TokenId>& ids, int64_t prefill) {
  span.open_session(42, 1, static_cast<int64_t>(ids.size()));
  std::vector<at::Tensor> outputs;
  const std::vector<TokenId> first(ids.begin(), ids.begin() + prefill);
  outputs.push_back(span.step(42, head.embed(first)));
  for (size_t i = prefill; i < ids.size(); ++i) {
    outputs.push_back(span.step(42, head.embed(std::vector<TokenId>{ids[i]})));
  }
  EXPECT_EQ(span.session_length(42), static_cast<int64_t>(ids.size()));
  span.close_session(42);
  return head.logits(at::cat(outputs, 1));
}

class CachedDecoding : public ::testing::TestWithParam<std::tuple<bool, std::string>> {};

TEST_P(CachedDecoding, EqualsFullRecomputation) {
  const auto [tied, rope_scaling] = GetParam();
  const fs::path dir = testing::fresh_dir(fmt::format("cached_{}_{}", tied, rope_scaling));
  TinyModelConfig config = testing::small_tiny(dir);
  config.tie_embeddings = tied;
  config.rope_scaling = rope_scaling;
  write_tiny_checkpoint(config);
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner span({dir, 0, -1, "f32", "cpu"});
  const at::Tensor full = recomputed_logits(head, span, kIds);
  for (int64_t prefill : {1, 4, 10}) {
    const at::Tensor cached = cached_logits(head, span, kIds, prefill);
    EXPECT_TRUE(at::allclose(cached, full, 1e-4, 1e-4))
        << "prefill " << prefill << ", max difference " << (cached - full).abs().max().item<float>();
    EXPECT_TRUE(at::equal(cached.argmax(-1), full.argmax(-1))) << "prefill " << prefill;
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, CachedDecoding,
                         ::testing::Values(std::tuple{false, std::string()}, std::tuple{true, std::string()},
                                           std::tuple{false, std::string("llama3")},
                                           std::tuple{true, std::string("llama3")}));

TEST(SpanRunner, ChainedSpansEqualOneSpan) {
  const fs::path dir = testing::fresh_dir("chained");
  write_tiny_checkpoint(testing::small_tiny(dir));
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner whole({dir, 0, -1, "f32", "cpu"});
  SpanRunner front({dir, 0, 1, "f32", "cpu"});
  SpanRunner middle({dir, 1, 3, "f32", "cpu"});
  SpanRunner back({dir, 3, 4, "f32", "cpu"});
  const at::Tensor x = head.embed(kIds);
  for (SpanRunner* s : {&whole, &front, &middle, &back}) s->open_session(7, 1, 16);
  const at::Tensor one = whole.step(7, x);
  const at::Tensor three = back.step(7, middle.step(7, front.step(7, x)));
  EXPECT_TRUE(at::allclose(one, three, 1e-5, 1e-5));
  const at::Tensor next = head.embed(std::vector<TokenId>{33});
  EXPECT_TRUE(at::allclose(whole.step(7, next), back.step(7, middle.step(7, front.step(7, next))), 1e-5, 1e-5));
}

TEST(SpanRunner, LoadsOnlyItsBlocksAndTheHeadNoBlock) {
  const fs::path dir = testing::fresh_dir("bytes");
  TinyModelConfig config = testing::small_tiny(dir);
  config.layers = 8;
  write_tiny_checkpoint(config);
  const SafetensorsFile file(dir / "model.safetensors");
  uint64_t block_bytes = 0, block3_bytes = 0;
  for (const auto& [name, info] : file.tensors()) {
    if (name.starts_with("model.layers.")) block_bytes += info.size_bytes();
    if (name.starts_with("model.layers.3.")) block3_bytes += info.size_bytes();
  }
  const SpanRunner span({dir, 3, 4, "f32", "cpu"});
  EXPECT_EQ(span.checkpoint_bytes_read(), block3_bytes);
  EXPECT_NEAR(static_cast<double>(span.checkpoint_bytes_read()) / block_bytes, 1.0 / 8, 1e-9);

  const ClientHead head({dir, "f32", "cpu"});
  for (const auto& name : head.tensors_read()) EXPECT_FALSE(name.starts_with("model.layers."));
  EXPECT_EQ(head.tensors_read().size(), 3u);  // embeddings, final norm, LM head
}

TEST(SpanRunner, ShardedSpanOpensOnlyItsShards) {
  const fs::path dir = testing::fresh_dir("bytes_sharded");
  TinyModelConfig config = testing::small_tiny(dir);
  config.shards = 4;
  write_tiny_checkpoint(config);
  // A span must not need the shards that hold other blocks: break one of them.
  const SpanRunner before({dir, 3, 4, "f32", "cpu"});
  fs::resize_file(dir / "model-00001-of-00004.safetensors", 5);
  const SpanRunner span({dir, 3, 4, "f32", "cpu"});
  EXPECT_EQ(span.checkpoint_bytes_read(), before.checkpoint_bytes_read());
  EXPECT_THROW(SpanRunner({dir, 0, 1, "f32", "cpu"}), ModelFileError);
}

// The cache-less forward's input gradients: in f64, against central finite differences; in f32
// (the default compute dtype), against the f64 gradient.
TEST(SpanRunner, ForwardGradientsMatchFiniteDifferences) {
  const fs::path dir = testing::fresh_dir("grad");
  TinyModelConfig config = testing::small_tiny(dir);
  config.layers = 2;
  write_tiny_checkpoint(config);
  const ClientHead head({dir, "f32", "cpu"});
  const at::Tensor x0 = head.embed(std::vector<TokenId>{1, 50, 9, 300}).to(at::kDouble);
  const at::Tensor weights = at::linspace(-1, 1, x0.numel(), at::kDouble).reshape(x0.sizes());
  const auto gradient = [&](const SpanRunner& span) {
    const at::Tensor x = x0.clone().requires_grad_(true);
    (span.forward(x) * weights).sum().backward();
    return x.grad();
  };
  const SpanRunner exact({dir, 0, -1, "f64", "cpu"});
  const at::Tensor g64 = gradient(exact);
  const at::Tensor direction = at::cos(at::arange(x0.numel(), at::kDouble)).reshape(x0.sizes());
  const double h = 1e-5;
  at::Tensor loss_plus, loss_minus;
  {
    at::NoGradGuard no_grad;
    loss_plus = (exact.forward(x0 + h * direction) * weights).sum();
    loss_minus = (exact.forward(x0 - h * direction) * weights).sum();
  }
  const double numeric = (loss_plus.item<double>() - loss_minus.item<double>()) / (2 * h);
  const double analytic = (g64 * direction).sum().item<double>();
  EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(analytic)));

  const SpanRunner f32({dir, 0, -1, "f32", "cpu"});
  const at::Tensor g32 = gradient(f32);
  EXPECT_TRUE(at::isfinite(g32).all().item<bool>());
  EXPECT_TRUE(at::allclose(g32, g64, 1e-3, 1e-4)) << "max difference " << (g32 - g64).abs().max().item<double>();
  // backward() is the same gradient without the caller touching autograd.
  EXPECT_TRUE(at::allclose(exact.backward(x0, weights), g64, 1e-12, 1e-12));
  const at::Tensor from_f32 = f32.backward(x0.to(at::kFloat), weights.to(at::kFloat));
  EXPECT_EQ(from_f32.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(from_f32.to(at::kDouble), g64, 1e-3, 1e-4));
  EXPECT_THROW(f32.backward(x0, weights.narrow(1, 0, 2)), InputError);
}

TEST(SpanRunner, CacheLessForwardEqualsCachedOutputs) {
  const fs::path dir = testing::fresh_dir("forward_vs_cached");
  write_tiny_checkpoint(testing::small_tiny(dir));
  const ClientHead head({dir, "f32", "cpu"});
  SpanRunner span({dir, 1, 3, "f32", "cpu"});
  const at::Tensor x = head.embed(kIds).repeat({2, 1, 1}) * at::tensor({1.0f, 0.5f}).view({2, 1, 1});
  span.open_session(1, 2, 10);
  const at::Tensor cached = span.step(1, x);
  const at::Tensor trained = span.forward(x.clone().requires_grad_(true));
  EXPECT_TRUE(trained.requires_grad());
  EXPECT_TRUE(at::allclose(trained.detach(), cached, 1e-5, 1e-5));
}

TEST(SpanRunner, BadInputGetsClearErrors) {
  const fs::path dir = testing::fresh_dir("bad_input");
  write_tiny_checkpoint(testing::small_tiny(dir));
  SpanRunner span({dir, 0, 2, "f32", "cpu"});
  const auto error = [&](auto&& f) -> std::string {
    try {
      f();
    } catch (const InputError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_THAT(error([&] { span.step(9, at::zeros({1, 1, 64})); }), HasSubstr("no open session 9"));
  span.open_session(9, 1, 4);
  EXPECT_THAT(error([&] { span.open_session(9, 1, 4); }), HasSubstr("already open"));
  EXPECT_THAT(error([&] {
                span.step(9, at::zeros({1, 1, 32}));
              }),
              HasSubstr("hidden size is 32 but the model's is 64"));
  EXPECT_THAT(error([&] { span.step(9, at::zeros({1, 64})); }), HasSubstr("[batch, tokens, 64]"));
  EXPECT_THAT(error([&] { span.step(9, at::zeros({2, 1, 64})); }), HasSubstr("opened for 1"));
  span.step(9, at::zeros({1, 3, 64}));
  EXPECT_THAT(error([&] {
                span.step(9, at::zeros({1, 2, 64}));
              }),
              HasSubstr("2 new tokens at position 3 run past the session's max length 4"));
  EXPECT_EQ(span.session_length(9), 3) << "a refused step leaves the session as it was";
  span.truncate_session(9, 1);
  EXPECT_EQ(span.session_length(9), 1);
  EXPECT_THROW(SpanRunner({"/nonexistent", 0, 1, "f32", "cpu"}), ModelFileError);
  EXPECT_THROW(SpanRunner({dir, 3, 9, "f32", "cpu"}), InputError);
  const ClientHead head({dir, "f32", "cpu"});
  EXPECT_THAT(error([&] {
                head.embed(std::vector<TokenId>{1, 512});
              }),
              HasSubstr("token id 512 is outside the vocabulary [0, 512)"));
}

}  // namespace
}  // namespace bouquet::gpu

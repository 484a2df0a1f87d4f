// Continuous batching in the engine: steps of several sessions run as one computation
// (SpanCompute::run_batch) give what each session's steps give alone, whatever their cache
// lengths, batch sizes, prompts or family; a bad step fails only its own session.
#include "gpu/span_compute.h"
#include "gpu/tensor_bridge.h"
#include "gpu/tiny_model.h"
#include "tests/net/support/net_support.h"

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHidden = 64;
// f32 rounding: a batch past the small-batch kernels' rows goes through libtorch's matrix
// product, which sums in another order than the kernels a lone step uses.
constexpr double kTol = 1e-4;
const core::BlockSpan kSpan{1, 4};

core::ComputeRequest step(core::CacheId cache, const at::Tensor& x, uint32_t start, uint32_t max_length = 64) {
  return testing::inference_step(kSpan, cache, x, start, max_length);
}

at::Tensor outputs(const core::Result<core::ComputeOutput>& result) { return testing::compute_outputs(result); }

fs::path tiny(const std::string& family, uint64_t seed) {
  const fs::path dir = testing::fresh_dir("batch_" + family);
  gpu::TinyModelConfig config;
  config.family = family;
  config.out = dir;
  config.layers = 5;
  config.hidden = kHidden;
  config.heads = 4;
  config.kv_heads = family == "llama" ? 2 : 4;
  config.seed = seed;
  gpu::write_tiny_checkpoint(config);
  return dir;
}

class SpanComputeBatch : public ::testing::TestWithParam<std::string> {};

// Four sessions of different histories (prefill lengths, batch sizes) step together for several
// rounds; a twin server runs the same steps one at a time. Every output agrees.
TEST_P(SpanComputeBatch, BatchedStepsEqualTheSameStepsRunAlone) {
  const uint64_t seed = testing::test_seed(31);
  const fs::path model = tiny(GetParam(), seed);
  SpanCompute batched({model, core::BlockSpan{0, 5}, "f32", "cpu", "none"});
  SpanCompute alone({model, core::BlockSpan{0, 5}, "f32", "cpu", "none"});
  at::manual_seed(static_cast<int64_t>(seed));
  const std::vector<std::pair<int64_t, int64_t>> sessions = {{1, 3}, {2, 7}, {1, 1}, {3, 12}};  // batch, prefill
  std::vector<uint32_t> length(sessions.size(), 0);
  for (size_t s = 0; s < sessions.size(); ++s) {
    const at::Tensor x = at::randn({sessions[s].first, sessions[s].second, kHidden});
    const auto request = step(s + 1, x, 0);
    EXPECT_TRUE(at::allclose(outputs(batched.run(request)), outputs(alone.run(request)), kTol, kTol));
    length[s] = static_cast<uint32_t>(sessions[s].second);
  }
  for (int round = 0; round < 4; ++round) {
    std::vector<core::ComputeRequest> requests;
    for (size_t s = 0; s < sessions.size(); ++s) {
      const int64_t tokens = round == 2 && s == 1 ? 2 : 1;  // a two-token step among decodes
      requests.push_back(step(s + 1, at::randn({sessions[s].first, tokens, kHidden}), length[s]));
      length[s] += static_cast<uint32_t>(tokens);
    }
    const auto results = batched.run_batch(requests);
    ASSERT_EQ(results.size(), requests.size());
    for (size_t s = 0; s < requests.size(); ++s) {
      SCOPED_TRACE(fmt::format("round {}, session {}", round, s + 1));
      const at::Tensor expected = outputs(alone.run(requests[s]));
      const at::Tensor got = outputs(results[s]);
      ASSERT_EQ(got.sizes(), expected.sizes());
      EXPECT_TRUE(at::allclose(got, expected, kTol, kTol)) << (got - expected).abs().max().item<float>();
    }
  }
  // A rewind inside a batch: session 2 replays its last position while the others decode.
  std::vector<core::ComputeRequest> requests;
  for (size_t s = 0; s < sessions.size(); ++s) {
    const uint32_t start = s == 1 ? length[s] - 1 : length[s];
    requests.push_back(step(s + 1, at::randn({sessions[s].first, 1, kHidden}), start));
  }
  const auto results = batched.run_batch(requests);
  for (size_t s = 0; s < requests.size(); ++s) {
    EXPECT_TRUE(at::allclose(outputs(results[s]), outputs(alone.run(requests[s])), kTol, kTol)) << "session " << s + 1;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, SpanComputeBatch, ::testing::Values("llama", "bloom"));

TEST(SpanComputeBatchErrors, ABadStepFailsItsOwnSessionOnlyAndLeavesItsCacheUsable) {
  const uint64_t seed = testing::test_seed(32);
  const fs::path model = tiny("llama", seed);
  SpanCompute batched({model, core::BlockSpan{0, 5}, "f32", "cpu", "none"});
  SpanCompute alone({model, core::BlockSpan{0, 5}, "f32", "cpu", "none"});
  at::manual_seed(static_cast<int64_t>(seed));
  for (core::CacheId id : {1, 2, 3}) {
    const auto prefill = step(id, at::randn({1, 4, kHidden}), 0, 6);
    outputs(batched.run(prefill));
    outputs(alone.run(prefill));
  }
  std::vector<core::ComputeRequest> requests = {
      step(1, at::randn({1, 1, kHidden}), 4, 6),
      step(2, at::randn({1, 3, kHidden}), 4, 6),  // runs past the session's 6 positions
      step(3, at::randn({1, 1, kHidden}), 9, 6),  // starts past what the cache holds
  };
  core::ComputeRequest wrong_width = step(4, at::randn({1, 1, kHidden / 2}), 0, 6);
  requests.push_back(wrong_width);
  requests.push_back(step(5, at::randn({2, 2, kHidden}), 0, 6));  // a fresh session, fine
  const auto results = batched.run_batch(requests);
  EXPECT_TRUE(at::allclose(outputs(results[0]), outputs(alone.run(requests[0])), kTol, kTol));
  ASSERT_FALSE(results[1].ok());
  EXPECT_EQ(results[1].error().code, core::ErrorCode::bad_request);
  EXPECT_NE(results[1].error().message.find("max length"), std::string::npos) << results[1].error().message;
  ASSERT_FALSE(results[2].ok());
  EXPECT_EQ(results[2].error().code, core::ErrorCode::bad_position);
  ASSERT_FALSE(results[3].ok());
  EXPECT_EQ(results[3].error().code, core::ErrorCode::bad_request);
  EXPECT_TRUE(at::allclose(outputs(results[4]), outputs(alone.run(requests[4])), kTol, kTol));
  // The failed sessions go on from where they were.
  const auto retry = step(2, at::randn({1, 2, kHidden}), 4, 6);
  EXPECT_TRUE(at::allclose(outputs(batched.run(retry)), outputs(alone.run(retry)), kTol, kTol));
}

}  // namespace
}  // namespace bouquet::net

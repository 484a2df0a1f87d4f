// A server's compute on a GPU (skipped where this libtorch sees none; scripts/device-check.sh runs
// them on one): the same outputs as on the CPU, and a session that runs out of GPU memory fails
// alone while the others keep their caches and go on.
#include "gpu/cuda_device.h"
#include "gpu/span_compute.h"
#include "gpu/tensor_bridge.h"
#include "gpu/tiny_model.h"
#include "tests/net/support/net_support.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHidden = 64;
const core::BlockSpan kSpan{0, 4};

core::ComputeRequest step(core::CacheId cache, const at::Tensor& x, uint32_t start, uint32_t max_length = 64) {
  return testing::inference_step(kSpan, cache, x, start, max_length);
}

at::Tensor outputs(const core::Result<core::ComputeOutput>& result) { return testing::compute_outputs(result); }

class CudaSpanCompute : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gpu::cuda_built() || !torch::cuda::is_available()) GTEST_SKIP() << "no GPU here";
    seed_ = testing::test_seed(41);
    model_ = testing::fresh_dir("cuda_span");
    gpu::TinyModelConfig config;
    config.out = model_;
    config.layers = 4;
    config.hidden = kHidden;
    config.seed = seed_;
    gpu::write_tiny_checkpoint(config);
  }
  uint64_t seed_ = 0;
  fs::path model_;
};

TEST_F(CudaSpanCompute, StepsOnTheGpuEqualStepsOnTheCpu) {
  SpanCompute gpu({model_, kSpan, "f32", "cuda", "none"});
  SpanCompute cpu({model_, kSpan, "f32", "cpu", "none"});
  at::manual_seed(static_cast<int64_t>(seed_));
  uint32_t length = 0;
  for (int64_t tokens : {7, 1, 1, 2, 1}) {
    const auto request = step(1, at::randn({1, tokens, kHidden}), length);
    const at::Tensor a = outputs(gpu.run(request));
    const at::Tensor b = outputs(cpu.run(request));
    ASSERT_TRUE(a.defined() && b.defined());
    EXPECT_TRUE(a.device().is_cpu());
    EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << "max diff " << (a - b).abs().max().item<float>();
    length += static_cast<uint32_t>(tokens);
  }
}

TEST_F(CudaSpanCompute, OutOfMemoryFailsOneSessionAndTheOthersGoOn) {
  SpanCompute gpu({model_, kSpan, "f32", "cuda", "none"});
  at::manual_seed(static_cast<int64_t>(seed_));
  ASSERT_TRUE(gpu.run(step(1, at::randn({1, 5, kHidden}), 0)).ok());
  // Caches of 2^31 positions: far beyond any GPU's memory.
  const auto huge = gpu.run(step(2, at::randn({1, 1, kHidden}), 0, 1u << 31));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, core::ErrorCode::compute_failed);
  EXPECT_THAT(huge.error().message, ::testing::HasSubstr("out of GPU memory"));
  EXPECT_EQ(huge.error().message.find('\n'), std::string::npos) << huge.error().message;
  EXPECT_EQ(gpu.open_caches(), 1u) << "the failed session's caches are gone";
  EXPECT_TRUE(gpu.run(step(1, at::randn({1, 1, kHidden}), 5)).ok()) << "the first session goes on";
  EXPECT_TRUE(gpu.run(step(3, at::randn({1, 4, kHidden}), 0)).ok()) << "a new session opens";
}

}  // namespace
}  // namespace bouquet::net

// The engine on CUDA, and what --device cuda says where it cannot have a GPU.
//
// The Cuda* tests run only where this build's libtorch has CUDA and sees a GPU (the device check,
// scripts/device-check.sh, runs them there) and skip elsewhere. The CudaErrors tests run where no
// GPU is visible: on Debian's CPU-only libtorch and on PyPI's CUDA libtorch without a GPU alike,
// --device cuda is one line naming the flag and what to do, and the commands exit non-zero.
#include "gpu/client_head.h"
#include "gpu/compute_options.h"
#include "gpu/cuda_device.h"
#include "gpu/errors.h"
#include "gpu/generate_local.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

bool gpu_here() { return cuda_built() && torch::cuda::is_available(); }

std::string compute_error(std::string_view dtype, std::string_view device) {
  try {
    resolve_compute(dtype, device);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CudaErrors, DeviceCudaWithoutAGpuIsOneLineSayingWhatToDo) {
  if (gpu_here()) GTEST_SKIP() << "a GPU is visible here";
  const std::string message = compute_error("f32", "cuda");
  EXPECT_THAT(message, HasSubstr("--device cuda"));
  EXPECT_THAT(message, HasSubstr(cuda_built() ? "sees no GPU" : "has no CUDA"));
  EXPECT_THAT(message, HasSubstr("--device cpu"));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  if (!cuda_built()) {
    EXPECT_THAT(message, HasSubstr("BOUQUET_TORCH=pip"));
  }
  EXPECT_THAT(compute_error("bf16", "cuda:1"), HasSubstr("--device cuda:1"));
}

TEST(CudaErrors, DeviceIndexPastTheGpusNamesHowManyThereAre) {
  if (!gpu_here()) GTEST_SKIP() << "needs a GPU";
  const int64_t count = torch::cuda::device_count();
  const std::string message = compute_error("f32", fmt::format("cuda:{}", count));
  EXPECT_THAT(message, HasSubstr(fmt::format("there are {} GPU(s) here", count)));
}

TEST(CudaErrors, UnknownDevicesAreNamed) {
  EXPECT_THAT(compute_error("f32", "tpu"), HasSubstr("unknown device 'tpu'"));
  EXPECT_THAT(compute_error("f32", "mps"), HasSubstr("unknown device 'mps'"));
  EXPECT_THAT(compute_error("f32", "cuda:x"), HasSubstr("unknown device 'cuda:x'"));
}

// The commands, as a user runs them: a non-zero exit with the one line, never an abort.
TEST(CudaErrors, CommandsWithDeviceCudaExitCleanlyWithoutAGpu) {
  if (gpu_here()) GTEST_SKIP() << "a GPU is visible here";
  const fs::path dir = testing::fresh_dir("cuda_errors_model");
  TinyModelConfig config = testing::small_tiny(dir);
  write_tiny_checkpoint(config);
  const std::string binary = BOUQUET_BINARY;
  for (const std::string& args :
       {fmt::format("generate --model '{}' --local --prompt-ids 1,2,3 --max-new-tokens 2 --device cuda", dir.string()),
        std::string("bench-block --hidden 64 --heads 4 --intermediate 128 --steps 1 --device cuda"),
        fmt::format("serve --model '{}' --blocks 0:2 --listen 127.0.0.1:0 --device cuda", dir.string())}) {
    int status = 0;
    const std::string out = testing::run_command(fmt::format("'{}' {}", binary, args), &status);
    // run_command gives the exit status, -1 for a signal; the shell reports a signal as 128 + n.
    EXPECT_TRUE(status > 0 && status < 128) << args << ": exit status " << status << "\n" << out;
    EXPECT_THAT(out, HasSubstr("--device cuda")) << args;
    EXPECT_THAT(out, Not(HasSubstr("terminate called"))) << args;
  }
}

// One tiny model for the CUDA variants.
class CudaEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_dir("cuda_model"));
    TinyModelConfig config = testing::small_tiny(*dir_);
    config.vocab = 400;
    make_tiny_model(config);
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    if (!gpu_here()) GTEST_SKIP() << "no GPU here (the device check runs these on one)";
  }

  static GenerateConfig generation(std::string_view device, std::string_view dtype) {
    GenerateConfig config;
    config.model = dir_->string();
    config.local = true;
    config.prompt_ids = "1,45,300,12,7";
    config.max_new_tokens = 32;
    config.ignore_eos = true;
    config.device = std::string(device);
    config.dtype = std::string(dtype);
    return config;
  }

  // The last position's logits of `prompt` through every block, as f32 on the CPU.
  static at::Tensor logits(std::string_view device, std::string_view dtype, const std::vector<TokenId>& prompt) {
    const ClientHead head({*dir_, std::string(dtype), std::string(device)});
    const SpanRunner blocks({*dir_, 0, -1, std::string(dtype), std::string(device)});
    at::NoGradGuard no_grad;
    const at::Tensor hidden = blocks.forward(head.embed(prompt));
    return head.logits(hidden).select(1, hidden.size(1) - 1).to(at::kCPU, at::kFloat);
  }

  static fs::path* dir_;
};

fs::path* CudaEngine::dir_ = nullptr;

TEST_F(CudaEngine, GreedyIdsOnCudaEqualThoseOnCpuF32) {
  const auto cpu = generate_local(generation("cpu", "f32")).ids;
  const auto cuda = generate_local(generation("cuda", "f32")).ids;
  ASSERT_EQ(cpu.size(), 32u);
  EXPECT_EQ(cuda, cpu);
}

TEST_F(CudaEngine, WeightsAndCachesStayOnTheGpu) {
  SpanRunner blocks({*dir_, 0, -1, "bf16", "cuda"});
  EXPECT_TRUE(blocks.compute().device.is_cuda());
  blocks.open_session(1, 1, 16);
  const at::Tensor x = at::randn({1, 3, blocks.hidden_size()});
  const at::Tensor y = blocks.step(1, x);
  EXPECT_TRUE(y.device().is_cpu()) << "outputs come back where the inputs were";
  EXPECT_EQ(blocks.session_length(1), 3);
  EXPECT_FALSE(describe_device(blocks.compute().device).empty());
  const auto memory = device_memory(blocks.compute().device);
  ASSERT_TRUE(memory.has_value());
  EXPECT_GT(memory->free_bytes, 0u);
  EXPECT_LE(memory->free_bytes, memory->total_bytes);
}

// bf16 keeps 8 bits of mantissa: through 4 tiny blocks the logits move by a few hundredths of
// their spread. Tolerance: 5% of the f32 logits' largest magnitude.
TEST_F(CudaEngine, Bf16LogitsWithinTolerenceOfF32) {
  const std::vector<TokenId> prompt = {1, 45, 300, 12, 7};
  const at::Tensor f32 = logits("cuda", "f32", prompt);
  const at::Tensor bf16 = logits("cuda", "bf16", prompt);
  const double scale = f32.abs().max().item<double>();
  const double diff = (bf16 - f32).abs().max().item<double>();
  std::printf("bf16 vs f32 logits: max |diff| %.5f, max |f32| %.5f, ratio %.5f\n", diff, scale, diff / scale);
  EXPECT_LT(diff, 0.05 * scale);
}

}  // namespace
}  // namespace bouquet::gpu

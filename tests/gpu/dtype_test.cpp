// Stored and compute dtypes, tied heads and Llama-3 rope scaling: the variants the numpy
// reference does not cover directly are checked against it through an equivalent checkpoint, or
// against the f32 model.
#include "gpu/client_head.h"
#include "gpu/compute_options.h"
#include "gpu/errors.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

const std::vector<TokenId> kIds = {1, 17, 230, 5, 77, 400, 3, 128, 64, 9, 300, 2};

at::Tensor logits_of(const fs::path& dir, const std::string& dtype = "f32") {
  const ClientHead head({dir, dtype, "cpu"});
  const SpanRunner span({dir, 0, -1, dtype, "cpu"});
  at::NoGradGuard no_grad;
  return head.logits(span.forward(head.embed(kIds))).squeeze(0);
}

// How far `other` is from `base`, in units of base's spread, and how often the top token agrees.
struct Agreement {
  double max_error;
  double top1;
};

Agreement compare(const at::Tensor& base, const at::Tensor& other) {
  const double spread = base.std().item<double>();
  return {(other - base).abs().max().item<double>() / spread,
          base.argmax(-1).eq(other.argmax(-1)).to(at::kFloat).mean().item<double>()};
}

fs::path tiny(const std::string& name, bool tied, const std::string& rope_scaling, const std::string& dtype = "f32") {
  const fs::path dir = testing::fresh_dir(name);
  TinyModelConfig config = testing::small_tiny(dir);
  config.tie_embeddings = tied;
  config.rope_scaling = rope_scaling;
  config.dtype = dtype;
  write_tiny_checkpoint(config);
  return dir;
}

// A tied head is an untied one whose lm_head equals the embeddings: the reference can run that.
TEST(TiedHead, MatchesRefLlamaOnTheUntiedEquivalent) {
  const std::string why = testing::reference_unavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  const fs::path tied = tiny("tied", true, "");
  const fs::path untied = testing::fresh_dir("tied_as_untied");
  std::vector<NamedTensor> tensors;
  {
    const SafetensorsFile file(tied / "model.safetensors");
    ASSERT_EQ(file.find("lm_head.weight"), nullptr) << "a tied checkpoint stores no LM head";
    for (const auto& [name, info] : file.tensors()) tensors.push_back({name, file.read(name)});
    tensors.push_back({"lm_head.weight", file.read("model.embed_tokens.weight")});
  }
  write_safetensors(untied / "model.safetensors", tensors, DType::F32);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(tied / "config.json"));
  config["tie_word_embeddings"] = false;
  std::ofstream(untied / "config.json") << config.dump();
  fs::copy_file(testing::shared_test_tokenizer(), untied / "tokenizer.model");
  const std::vector<TokenId> prompt = {1, 45, 300, 12, 99};
  testing::expect_matches_reference(tied, untied, prompt, 10);
}

class StoredDtype : public ::testing::TestWithParam<std::tuple<bool, std::string>> {};

// The same seed gives the same underlying weights in every stored dtype, so f16 and bf16 copies
// must stay close to the f32 model (bf16 keeps 8 bits of mantissa, f16 11).
TEST_P(StoredDtype, HalfPrecisionCopiesStayCloseToF32) {
  const auto [tied, rope] = GetParam();
  const std::string name = fmt::format("stored_{}_{}", tied, rope);
  const at::Tensor f32 = logits_of(tiny(name + "_f32", tied, rope, "f32"));
  const Agreement f16 = compare(f32, logits_of(tiny(name + "_f16", tied, rope, "f16")));
  const Agreement bf16 = compare(f32, logits_of(tiny(name + "_bf16", tied, rope, "bf16")));
  EXPECT_LT(f16.max_error, 0.01);
  EXPECT_EQ(f16.top1, 1.0);
  EXPECT_LT(bf16.max_error, 0.1);
  EXPECT_GE(bf16.top1, 0.75);
}

INSTANTIATE_TEST_SUITE_P(Variants, StoredDtype,
                         ::testing::Values(std::tuple{false, std::string()}, std::tuple{true, std::string()},
                                           std::tuple{false, std::string("llama3")},
                                           std::tuple{true, std::string("llama3")}));

TEST(ComputeDtype, Bf16ComputeStaysCloseToF32) {
  const fs::path dir = tiny("compute_bf16", false, "llama3");
  const Agreement bf16 = compare(logits_of(dir, "f32"), logits_of(dir, "bf16"));
  EXPECT_LT(bf16.max_error, 0.2);
  EXPECT_GE(bf16.top1, 0.75);
}

TEST(ComputeDtype, UnsupportedCombinationIsOneClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "f16 is supported on CUDA";
#if TORCH_VERSION_MAJOR < 2
  // libtorch 1.13's CPU kernels lack half-precision matrix products; 2.x has them.
  try {
    resolve_compute("f16", "cpu");
    FAIL() << "f16 on this CPU libtorch should be refused";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("compute dtype f16 is not supported on cpu"));
  }
#endif
  EXPECT_THROW(resolve_compute("f8", "cpu"), InputError);
  EXPECT_THROW(resolve_compute("f32", "tpu"), InputError);
}

TEST(RopeScaling, ChangesTheOutputsOfTheSameWeights) {
  const fs::path plain = tiny("rope_plain", false, "");
  const fs::path scaled = tiny("rope_scaled", false, "llama3");
  const at::Tensor a = logits_of(plain);
  const at::Tensor b = logits_of(scaled);
  // Position 0 has no rotation at all, so the first token's logits agree exactly...
  EXPECT_TRUE(at::allclose(a[0], b[0], 1e-5, 1e-5));
  // ...and later positions differ because the slow frequencies were divided.
  EXPECT_GT((a.narrow(0, 1, a.size(0) - 1) - b.narrow(0, 1, b.size(0) - 1)).abs().max().item<double>(), 1e-3);
}

}  // namespace
}  // namespace bouquet::gpu

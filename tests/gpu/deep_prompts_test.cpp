// Deep prompts in the span runner (deep prompt tuning): zero prompts change nothing,
// backward's gradients equal libtorch autograd through forward, spans chain with sliced prompts,
// a cached prefill with prompts equals the cache-less forward, and bad shapes are InputErrors.
#include "gpu/errors.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "tests/gpu/support/model_files.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr uint64_t kSeed = 5;

struct Fixture {
  fs::path dir;
  at::Tensor hidden;   // [2, 7, 64]
  at::Tensor prompts;  // [4 blocks, 1, 3, 64]
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture out;
    out.dir = testing::fresh_dir("deep_prompts");
    write_tiny_checkpoint(testing::small_tiny(out.dir));
    std::printf("deep prompts: seed %llu (fixed; at::manual_seed)\n", static_cast<unsigned long long>(kSeed));
    at::manual_seed(kSeed);
    out.hidden = at::randn({2, 7, 64});
    out.prompts = at::randn({4, 1, 3, 64});
    return out;
  }();
  return f;
}

TEST(DeepPrompts, ZeroPromptsChangeNothingAndOthersDo) {
  const Fixture& f = fixture();
  const SpanRunner span({f.dir, 0, -1, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const at::Tensor plain = span.forward(f.hidden);
  EXPECT_TRUE(at::equal(span.forward(f.hidden, at::zeros_like(f.prompts)), plain));
  const at::Tensor prompted = span.forward(f.hidden, f.prompts);
  EXPECT_FALSE(at::allclose(prompted, plain, 1e-3, 1e-3));
}

TEST(DeepPrompts, BackwardEqualsAutogradThroughForward) {
  const Fixture& f = fixture();
  const SpanRunner span({f.dir, 0, -1, "f32", "cpu"});
  const at::Tensor grad_outputs = at::randn_like(f.hidden);
  const at::Tensor x = f.hidden.clone().requires_grad_(true);
  const at::Tensor p = f.prompts.clone().requires_grad_(true);
  (span.forward(x, p) * grad_outputs).sum().backward();
  const SpanRunner::Gradients g = span.backward(f.hidden, grad_outputs, f.prompts);
  EXPECT_TRUE(at::allclose(g.hidden, x.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(g.prompts, p.grad(), 1e-5, 1e-6));
  EXPECT_EQ(g.prompts.sizes(), f.prompts.sizes());
  EXPECT_GT(g.prompts.abs().sum().item<double>(), 0.0);
}

TEST(DeepPrompts, ChainedSpansTakeTheirSliceOfThePrompts) {
  const Fixture& f = fixture();
  const SpanRunner whole({f.dir, 0, -1, "f32", "cpu"});
  const SpanRunner first({f.dir, 0, 1, "f32", "cpu"});
  const SpanRunner rest({f.dir, 1, 4, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const at::Tensor chained =
      rest.forward(first.forward(f.hidden, f.prompts.narrow(0, 0, 1)), f.prompts.narrow(0, 1, 3));
  EXPECT_TRUE(at::allclose(chained, whole.forward(f.hidden, f.prompts), 1e-5, 1e-5));
}

TEST(DeepPrompts, CachedStepsEqualTheCachelessForward) {
  const Fixture& f = fixture();
  SpanRunner span({f.dir, 0, -1, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const at::Tensor full = span.forward(f.hidden, f.prompts);
  // Prefill of 2 positions (inside the 3-position prefix), then one at a time: the third
  // position still gets its prompt, later ones none.
  span.open_session(1, 2, 7);
  std::vector<at::Tensor> parts{span.step(1, f.hidden.narrow(1, 0, 2), f.prompts)};
  for (int64_t t = 2; t < 7; ++t) parts.push_back(span.step(1, f.hidden.narrow(1, t, 1), f.prompts));
  EXPECT_TRUE(at::allclose(at::cat(parts, 1), full, 1e-4, 1e-4));
}

TEST(DeepPrompts, BadShapesAreInputErrors) {
  const Fixture& f = fixture();
  const SpanRunner span({f.dir, 0, -1, "f32", "cpu"});
  const at::Tensor grad = at::ones_like(f.hidden);
  for (const at::Tensor& bad : {at::zeros({3, 1, 3, 64}), at::zeros({4, 3, 3, 64}), at::zeros({4, 1, 3, 32}),
                                at::zeros({4, 3, 64}), at::zeros({4, 1, 3, 64}, at::kLong)}) {
    try {
      span.backward(f.hidden, grad, bad);
      ADD_FAILURE() << "accepted prompts " << bad.sizes();
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr("deep prompts must be"));
    }
  }
}

}  // namespace
}  // namespace bouquet::gpu

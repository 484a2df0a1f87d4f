// A server's compute seam with LoRA adapters: inference steps, forward and backward with an
// adapter give what the engine gives with that adapter active locally; sessions with different
// adapters interleave on the same blocks without mixing; an adapter the server lacks is refused
// as unknown_adapter and the next request still runs.
#include "gpu/lora.h"
#include "gpu/span_compute.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"
#include "tests/net/support/net_support.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;

core::ComputeRequest request(core::ComputeKind kind, const at::Tensor& x, const std::string& adapter) {
  core::ComputeRequest r;
  r.kind = kind;
  r.span = core::BlockSpan{1, 4};
  r.batch = static_cast<uint32_t>(x.size(0));
  r.new_tokens = static_cast<uint32_t>(x.size(1));
  r.adapter = adapter;
  r.inputs = activation_from_tensor(x, core::Compression::none);
  return r;
}

TEST(SpanComputeLora, AdaptersPerRequestMatchLocal) {
  const uint64_t seed = testing::test_seed(17);
  const fs::path model = testing::tiny_model("lora_compute", 6, seed);
  const fs::path a = testing::fresh_dir("lora_compute_a");
  const fs::path b = testing::fresh_dir("lora_compute_b");
  gpu::write_tiny_adapter({model, a, 4, 8.0, "q_proj,v_proj", seed});
  gpu::write_tiny_adapter({model, b, 2, 2.0, "o_proj,gate_proj,down_proj", seed + 1});
  SpanCompute compute({model, core::BlockSpan{0, 5}, "f32", "cpu", "none", {a, b}});
  EXPECT_EQ(compute.adapter_names(), (std::vector<std::string>{"lora_compute_a", "lora_compute_b"}));

  // The local reference: blocks [1, 4) in one runner, each adapter loaded for them.
  gpu::SpanRunner local({model, 1, 4, "f32", "cpu", "none", {a, b}});
  at::manual_seed(seed);
  const at::Tensor x = at::randn({2, 6, 64});
  const at::Tensor g = at::randn({2, 6, 64});
  for (const std::string name : {"", "lora_compute_a", "lora_compute_b"}) {
    SCOPED_TRACE("adapter '" + name + "'");
    at::Tensor expected, expected_grad;
    {
      at::NoGradGuard no_grad;
      const gpu::ActiveLora active(local.adapter(name));
      expected = local.forward(x);
    }
    {
      const gpu::ActiveLora active(local.adapter(name));
      expected_grad = local.backward(x, g);
    }
    auto forward = compute.run(request(core::ComputeKind::forward, x, name));
    ASSERT_TRUE(forward.ok()) << forward.error().message;
    EXPECT_TRUE(at::allclose(tensor_from_activation(forward.value().outputs), expected, 1e-4, 1e-4));
    core::ComputeRequest back = request(core::ComputeKind::backward, x, name);
    back.grad_outputs = activation_from_tensor(g, core::Compression::none);
    auto backward = compute.run(back);
    ASSERT_TRUE(backward.ok()) << backward.error().message;
    const double tolerance = 1e-5 * std::max(1.0, expected_grad.abs().max().item<double>());
    EXPECT_TRUE(at::allclose(tensor_from_activation(backward.value().outputs), expected_grad, 1e-4, tolerance));
  }

  // Two sessions on the same blocks, each with its own adapter, stepping in turn.
  std::map<std::string, at::Tensor> expected;
  for (const std::string name : {"lora_compute_a", "lora_compute_b"}) {
    at::NoGradGuard no_grad;
    const gpu::ActiveLora active(local.adapter(name));
    expected[name] = local.forward(x);
  }
  std::map<std::string, std::vector<at::Tensor>> steps;
  for (int64_t t = 0; t < x.size(1); ++t) {
    uint64_t cache = 1;
    for (const std::string name : {"lora_compute_a", "lora_compute_b"}) {
      core::ComputeRequest step = request(core::ComputeKind::inference, x.narrow(1, t, 1).contiguous(), name);
      step.cache_id = cache++;
      step.cache_length = static_cast<uint32_t>(t);
      step.max_length = 16;
      auto out = compute.run(step);
      ASSERT_TRUE(out.ok()) << out.error().message;
      steps[name].push_back(tensor_from_activation(out.value().outputs));
    }
  }
  for (const auto& [name, outputs] : steps) {
    EXPECT_TRUE(at::allclose(at::cat(outputs, 1), expected[name], 1e-4, 1e-4)) << name;
  }
  EXPECT_FALSE(at::allclose(expected["lora_compute_a"], expected["lora_compute_b"], 1e-3, 1e-3));

  // An adapter it lacks: unknown_adapter naming it, and the compute keeps serving.
  for (auto kind : {core::ComputeKind::inference, core::ComputeKind::forward}) {
    core::ComputeRequest bad = request(kind, x, "lora_compute_c");
    bad.cache_id = 9;
    bad.max_length = 16;
    auto out = compute.run(bad);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().code, core::ErrorCode::unknown_adapter);
    EXPECT_NE(out.error().message.find("lora_compute_c"), std::string::npos) << out.error().message;
  }
  EXPECT_TRUE(compute.run(request(core::ComputeKind::forward, x, "lora_compute_a")).ok());
}

}  // namespace
}  // namespace bouquet::net

// Three `bouquet serve` processes on 127.0.0.1 and clients over loopback: the swarm reproduces
// local generation, serves concurrent clients as if each were alone, keeps compressed runs within
// a stated error bound, computes forward/backward like local autograd, and puts exactly
// encoded_size() bytes on the wire.
#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"
#include "net/client/remote_generation.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/remote_span.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using core::Compression;

class ServeSwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::filesystem::path(testing::tiny_model("serve", 6));
    servers_ = new std::vector<ServerProcess>(testing::start_servers(*model_, {"0:2", "2:4", "4:6"}));
  }
  static void TearDownTestSuite() {
    delete servers_;
    delete model_;
  }
  void TearDown() override {
    for (auto& s : *servers_) ASSERT_TRUE(s.running()) << "server " << s.address() << " died";
  }

  static SwarmClientConfig client_config() {
    SwarmClientConfig config;
    config.peers = testing::addresses(*servers_);
    return config;
  }
  static gpu::GenerationRequest greedy(std::vector<gpu::TokenId> prompt, int64_t count) {
    gpu::GenerationRequest request;
    request.prompt_ids = std::move(prompt);
    request.max_new_tokens = count;
    request.ignore_eos = true;
    return request;
  }

  static std::filesystem::path* model_;
  static std::vector<ServerProcess>* servers_;
};

std::filesystem::path* ServeSwarm::model_ = nullptr;
std::vector<ServerProcess>* ServeSwarm::servers_ = nullptr;

TEST_F(ServeSwarm, GreedyIdsEqualLocalGeneration) {
  const gpu::ClientHead head({*model_, "f32", "cpu"});
  SwarmClient client(client_config());
  const auto request = greedy({1, 200, 13, 77, 310, 4}, 24);
  const auto generation = generate_remote_ids(head, client, model_fingerprint(*model_), request, {});
  EXPECT_EQ(generation.result.ids, testing::local_greedy_ids(*model_, request.prompt_ids, 24));
  ASSERT_EQ(generation.route.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(generation.route[i].address, (*servers_)[i].address());
}

TEST_F(ServeSwarm, TwoConcurrentClientsEachGetTheirSoloOutput) {
  const std::vector<gpu::TokenId> prompts[2] = {{1, 5, 9, 11}, {1, 300, 301, 302, 303, 304}};
  std::vector<gpu::TokenId> got[2];
  std::string errors[2];
  std::atomic<int> ready{0};
  auto run = [&](int i) {
    try {
      const gpu::ClientHead head({*model_, "f32", "cpu"});
      SwarmClient client(client_config());
      client.discover();
      ++ready;
      while (ready < 2) std::this_thread::yield();  // both open their sessions together
      got[i] = generate_remote_ids(head, client, model_fingerprint(*model_), greedy(prompts[i], 32), {}).result.ids;
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  };
  std::thread first(run, 0), second(run, 1);
  first.join();
  second.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(errors[i], "");
    EXPECT_EQ(got[i], testing::local_greedy_ids(*model_, prompts[i], 32)) << "client " << i;
  }
  EXPECT_NE(got[0], got[1]);
}

// The codec's worst-case error at every element, with random signs: float16 rounds to within
// 2^-11 of |x|; int8 blockwise to within absmax/254 of its 64-value block (plus 2^-11 of absmax
// for the float16 scale).
at::Tensor perturb_by_codec_envelope(const at::Tensor& x, Compression c, core::Rng& rng) {
  at::Tensor signs = at::empty(x.sizes(), at::kFloat);
  for (int64_t i = 0; i < signs.numel(); ++i) signs.data_ptr<float>()[i] = rng.bernoulli(0.5) ? 1.0f : -1.0f;
  if (c == Compression::float16) return x + x.abs() * std::ldexp(1.0f, -11) * signs;
  const at::Tensor blocks = x.reshape({-1, 64});
  const at::Tensor envelope = blocks.abs().amax(1, true) * (0.5f / 127.0f + std::ldexp(1.0f, -11));
  return (blocks + envelope * signs.reshape({-1, 64})).reshape(x.sizes());
}

// Teacher forcing through three local spans: the prompt as one step, then one token per step.
// `wire(x)` is applied where the remote run puts a tensor on the wire: the client's input to the
// first span and every span's output.
at::Tensor local_logits(const std::filesystem::path& model, const std::vector<gpu::TokenId>& ids, size_t prompt,
                        const std::function<at::Tensor(const at::Tensor&)>& wire) {
  const gpu::ClientHead head({model, "f32", "cpu"});
  std::vector<std::unique_ptr<gpu::SpanRunner>> spans;
  for (int64_t b : {0, 2, 4}) {
    spans.push_back(std::make_unique<gpu::SpanRunner>(gpu::SpanRunnerConfig{model, b, b + 2, "f32", "cpu"}));
    spans.back()->open_session(1, 1, static_cast<int64_t>(ids.size()));
  }
  std::vector<at::Tensor> outputs;
  for (size_t at = 0; at < ids.size(); at = at == 0 ? prompt : at + 1) {
    const size_t n = at == 0 ? prompt : 1;
    at::Tensor x = wire(head.embed(std::vector<gpu::TokenId>(ids.begin() + at, ids.begin() + at + n)));
    for (auto& span : spans) x = wire(span->step(1, x));
    outputs.push_back(head.logits(x));
  }
  return at::cat(outputs, 1);
}

at::Tensor remote_logits(SwarmClient& client, const std::filesystem::path& model, const std::vector<gpu::TokenId>& ids,
                         size_t prompt, Compression c) {
  const gpu::ClientHead head({model, "f32", "cpu"});
  RemoteSessionConfig config;
  config.session_id = 1000 + static_cast<uint64_t>(c);
  config.model_id = model_fingerprint(model);
  config.num_blocks = 6;
  config.hidden_size = 64;
  config.max_length = static_cast<uint32_t>(ids.size());
  config.compression = c;
  RemoteInferenceSession session(client, config);
  session.open();
  std::vector<at::Tensor> outputs;
  for (size_t at = 0; at < ids.size(); at = at == 0 ? prompt : at + 1) {
    const size_t n = at == 0 ? prompt : 1;
    outputs.push_back(
        head.logits(session.step(head.embed(std::vector<gpu::TokenId>(ids.begin() + at, ids.begin() + at + n)))));
  }
  session.close();
  return at::cat(outputs, 1);
}

TEST_F(ServeSwarm, CompressedRunsStayWithinTheCodecBoundUnderTeacherForcing) {
  core::Rng rng(testing::test_seed(21));
  std::vector<gpu::TokenId> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(static_cast<gpu::TokenId>(rng.below(512)));
  const size_t prompt = 8;
  const at::Tensor exact = local_logits(*model_, ids, prompt, [](const at::Tensor& x) { return x; });
  SwarmClient client(client_config());
  const at::Tensor lossless = remote_logits(client, *model_, ids, prompt, Compression::none);
  EXPECT_TRUE(at::allclose(lossless, exact, 1e-5, 1e-5)) << (lossless - exact).abs().max().item<float>();

  for (Compression c : {Compression::float16, Compression::int8_blockwise}) {
    // The model's sensitivity: how far the logits move when every wire crossing is perturbed by
    // the codec's worst-case error with random signs. Real rounding errors are at most that
    // envelope and spread within it (RMS about envelope/sqrt(3)), so they move the logits less;
    // twice the envelope's effect covers the spread between draws.
    const at::Tensor envelope_logits =
        local_logits(*model_, ids, prompt, [&](const at::Tensor& x) { return perturb_by_codec_envelope(x, c, rng); });
    const float sensitivity = (envelope_logits - exact).abs().max().item<float>();
    const float bound = 2.0f * sensitivity;
    // The same run with the real codec applied locally at the same crossings: the remote run must
    // be exactly this computation (the wire adds nothing else).
    const at::Tensor emulated =
        local_logits(*model_, ids, prompt, [&](const at::Tensor& x) { return round_trip(x, c); });
    const at::Tensor remote = remote_logits(client, *model_, ids, prompt, c);
    const float error = (remote - exact).abs().max().item<float>();
    const float logit_range = exact.abs().max().item<float>();
    fmt::print("{}: max |logit error| {:.3g} (bound {:.3g} = 2 x envelope effect {:.3g}; logits up to {:.3g})\n",
               core::to_string(c), error, bound, sensitivity, logit_range);
    EXPECT_GT(error, 0.0f) << "a lossy codec changed nothing: is compression applied at all?";
    EXPECT_LE(error, bound) << core::to_string(c);
    EXPECT_TRUE(at::allclose(remote, emulated, 1e-4, 1e-4)) << (remote - emulated).abs().max().item<float>();
  }
}

TEST_F(ServeSwarm, ForwardAndBackwardThroughOneServerProcessEqualLocalAutograd) {
  SwarmClient client(client_config());
  client.discover();
  core::Rng rng(testing::test_seed(22));
  at::Tensor x = at::empty({3, 5, 64}, at::kFloat), g = at::empty({3, 5, 64}, at::kFloat);
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.data_ptr<float>()[i] = static_cast<float>(rng.normal());
    g.data_ptr<float>()[i] = static_cast<float>(rng.normal());
  }
  const RemoteSpanCall call{client.peers()[1].peer, {2, 4}, model_fingerprint(*model_)};
  const at::Tensor y_remote = remote_forward(client, call, x);
  const at::Tensor dx_remote = remote_backward(client, call, x, g);
  gpu::SpanRunner local({*model_, 2, 4, "f32", "cpu"});
  const at::Tensor leaf = x.clone().requires_grad_(true);
  const at::Tensor y = local.forward(leaf);
  y.backward(g);
  EXPECT_TRUE(at::allclose(y_remote, y.detach(), 1e-5, 1e-6)) << (y_remote - y).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(dx_remote, leaf.grad(), 1e-5, 1e-6)) << (dx_remote - leaf.grad()).abs().max().item<float>();
}

TEST_F(ServeSwarm, EncodedSizeEqualsTheBytesOnTheWire) {
  const std::string address = (*servers_)[0].address();
  core::Rng rng(testing::test_seed(23));
  for (Compression c : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    testing::RawClient raw(address);
    core::OpenSession open;
    open.session_id = 5;
    open.model_id = model_fingerprint(*model_);
    open.span = {0, 2};
    open.max_length = 64;
    open.batch = 2;
    open.reply_compression = c;
    raw.call<core::SessionOpened>(open);
    at::Tensor h = at::empty({2, 33, 64}, at::kFloat);
    for (int64_t i = 0; i < h.numel(); ++i) h.data_ptr<float>()[i] = static_cast<float>(rng.normal());
    const core::StepRequest step{5, 1, 0, activation_from_tensor(h, c), std::nullopt, {}};
    const auto frame = encode_frame(step);
    EXPECT_EQ(frame.size() - kFrameHeaderBytes, step.encoded_size());
    raw.send_bytes(frame);
    uint64_t body_bytes = 0;
    const auto reply = raw.read(10, &body_bytes);
    const auto* m = std::get_if<core::Message>(&reply);
    ASSERT_TRUE(m && std::holds_alternative<core::StepResult>(*m)) << testing::describe(reply);
    const auto& result = std::get<core::StepResult>(*m);
    EXPECT_EQ(result.hidden_states.compression, c);
    EXPECT_EQ(body_bytes, result.encoded_size()) << core::to_string(c);
    // The server's reply was packed from its output tensor; its size is what the simulator
    // would charge for a handle of that shape and compression.
    EXPECT_EQ(body_bytes, core::encoded_size(core::StepResult{
                              5, 1, 0, core::make_sized_activation({2, 33, 64}, core::DType::float32, c)}));
  }
}

}  // namespace
}  // namespace bouquet::net

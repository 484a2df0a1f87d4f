// Servers on threads of the test process, clients over real loopback sockets: generation through
// a chain equals local generation, sub-spans work, forward/backward equal local autograd, and
// failures (a dead peer, another model) come back fast as one clear error.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/span_compute.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"
#include "gpu/tiny_model.h"
#include "net/client/remote_generation.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/remote_span.h"

namespace bouquet::net {
namespace {

using testing::serve_config;
using testing::ThreadServer;

SwarmClientConfig client_config(std::vector<std::string> peers) {
  SwarmClientConfig config;
  config.peers = std::move(peers);
  return config;
}

std::vector<gpu::TokenId> remote_greedy_ids(const std::filesystem::path& model, const std::vector<std::string>& peers,
                                            const std::vector<gpu::TokenId>& prompt, int64_t count,
                                            std::vector<RouteHop>* route = nullptr) {
  const gpu::ClientHead head({model, "f32", "cpu"});
  SwarmClient client(client_config(peers));
  gpu::GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = count;
  request.ignore_eos = true;
  auto generation = generate_remote_ids(head, client, model_fingerprint(model), request, {});
  if (route) *route = generation.route;
  return generation.result.ids;
}

TEST(Swarm, ThreeServersGiveTheLocalGreedyIds) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer a(serve_config(model, "0:2")), b(serve_config(model, "2:5")), c(serve_config(model, "5:6"));
  const std::vector<gpu::TokenId> prompt = {1, 17, 300, 42, 9};
  std::vector<RouteHop> route;
  const auto remote = remote_greedy_ids(model, {c.address(), a.address(), b.address()}, prompt, 12, &route);
  EXPECT_EQ(remote, testing::local_greedy_ids(model, prompt, 12));
  ASSERT_EQ(route.size(), 3u);
  EXPECT_EQ(route[0].address, a.address());
  EXPECT_EQ(route[0].span, (core::BlockSpan{0, 2}));
  EXPECT_EQ(route[1].address, b.address());
  EXPECT_EQ(route[2].span, (core::BlockSpan{5, 6}));
}

TEST(Swarm, ConcurrentClientsAreBatchedAndEachGetsItsLocalGreedyIds) {
  const auto model = testing::tiny_model("swarm_batched", 6);
  std::vector<std::unique_ptr<ThreadServer>> servers;
  for (const char* blocks : {"0:3", "3:6"}) {
    ServeConfig config = serve_config(model, blocks);
    config.max_batch = 8;
    config.batch_wait_ms = 20;  // decode steps of the other clients join within 20 ms
    servers.push_back(std::make_unique<ThreadServer>(config));
  }
  const std::vector<std::string> peers = {servers[0]->address(), servers[1]->address()};
  std::vector<std::vector<gpu::TokenId>> prompts = {{1, 17, 300}, {5, 9}, {42, 43, 44, 45, 46}, {7}};
  std::vector<std::vector<gpu::TokenId>> remote(prompts.size());
  std::vector<std::thread> clients;
  for (size_t c = 0; c < prompts.size(); ++c) {
    clients.emplace_back([&, c] { remote[c] = remote_greedy_ids(model, peers, prompts[c], 12); });
  }
  for (auto& t : clients) t.join();
  for (size_t c = 0; c < prompts.size(); ++c) {
    EXPECT_EQ(remote[c], testing::local_greedy_ids(model, prompts[c], 12)) << "client " << c;
  }
  EXPECT_GT(servers[0]->server().batches_started() + servers[1]->server().batches_started(), 0u)
      << "four clients decoding at once should have shared computations";
}

TEST(Swarm, OverlappingServersAreUsedForSubSpans) {
  // [0, 4) and [2, 6): the chain runs [0, 4) then only [4, 6) of the second server.
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer a(serve_config(model, "0:4")), b(serve_config(model, "2:6"));
  const std::vector<gpu::TokenId> prompt = {5, 6, 7};
  std::vector<RouteHop> route;
  const auto remote = remote_greedy_ids(model, {a.address(), b.address()}, prompt, 8, &route);
  EXPECT_EQ(remote, testing::local_greedy_ids(model, prompt, 8));
  ASSERT_EQ(route.size(), 2u);
  EXPECT_EQ(route[1].span, (core::BlockSpan{4, 6}));
}

TEST(Swarm, LongPrefillIsSplitIntoStepsUnderTheFrameLimitWithTheSameResult) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer a(serve_config(model, "0:3")), b(serve_config(model, "3:6"));
  SwarmClientConfig config = client_config({a.address(), b.address()});
  // A token is 64 float32 values (256 bytes): this frame limit holds 5 tokens per step.
  config.limits.max_frame_bytes = 4096 + 4 * 64 * 5;
  SwarmClient client(config);
  RemoteSessionConfig session_config;
  session_config.session_id = 77;
  session_config.model_id = model_fingerprint(model);
  session_config.num_blocks = 6;
  session_config.hidden_size = 64;
  session_config.max_length = 32;
  RemoteInferenceSession session(client, session_config);
  session.open();
  ASSERT_EQ(session.max_step_tokens(), 5u);
  const gpu::ClientHead head({model, "f32", "cpu"});
  std::vector<gpu::TokenId> ids;
  for (int i = 0; i < 23; ++i) ids.push_back(3 + 7 * i);
  const at::Tensor hidden = head.embed(ids);
  const at::Tensor remote = session.step(hidden);
  EXPECT_EQ(session.length(), 23u);
  gpu::SpanRunner local({model, 0, -1, "f32", "cpu"});
  local.open_session(1, 1, 32);
  const at::Tensor expected = local.step(1, hidden);
  EXPECT_TRUE(at::allclose(remote, expected, 1e-5, 1e-5)) << (remote - expected).abs().amax({0, 2});
}

TEST(Swarm, RewindReplaysFromThatPosition) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer a(serve_config(model, "0:6"));
  SwarmClient client(client_config({a.address()}));
  RemoteSessionConfig config;
  config.session_id = 5;
  config.model_id = model_fingerprint(model);
  config.num_blocks = 6;
  config.hidden_size = 64;
  config.max_length = 16;
  RemoteInferenceSession session(client, config);
  session.open();
  const gpu::ClientHead head({model, "f32", "cpu"});
  session.step(head.embed(std::vector<gpu::TokenId>{1, 2, 3, 4}));
  const at::Tensor first = session.step(head.embed(std::vector<gpu::TokenId>{5}));
  session.step(head.embed(std::vector<gpu::TokenId>{99, 98}));
  // Back to position 4: the cache forgets 5, 99, 98 and sees 5 again.
  const at::Tensor again = session.step(head.embed(std::vector<gpu::TokenId>{5}), 4);
  EXPECT_TRUE(at::equal(first, again));
  EXPECT_EQ(session.length(), 5u);
}

TEST(Swarm, ForwardAndBackwardThroughOneServerEqualLocalAutograd) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer server(serve_config(model, "1:4"));
  SwarmClient client(client_config({server.address()}));
  client.discover();
  core::Rng rng(testing::test_seed(8));
  at::Tensor x = at::empty({2, 7, 64}, at::kFloat);
  at::Tensor g = at::empty({2, 7, 64}, at::kFloat);
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.data_ptr<float>()[i] = static_cast<float>(rng.normal());
    g.data_ptr<float>()[i] = static_cast<float>(rng.normal());
  }
  const RemoteSpanCall call{client.peers()[0].peer, {1, 4}, model_fingerprint(model)};
  const at::Tensor y_remote = remote_forward(client, call, x);
  const at::Tensor dx_remote = remote_backward(client, call, x, g);

  gpu::SpanRunner local({model, 1, 4, "f32", "cpu"});
  const at::Tensor leaf = x.clone().requires_grad_(true);
  const at::Tensor y = local.forward(leaf);
  y.backward(g);
  EXPECT_TRUE(at::allclose(y_remote, y.detach(), 1e-5, 1e-6)) << (y_remote - y).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(dx_remote, leaf.grad(), 1e-5, 1e-6)) << (dx_remote - leaf.grad()).abs().max().item<float>();
  EXPECT_GT(dx_remote.abs().max().item<float>(), 0.0f);
}

TEST(Swarm, ForwardOfASpanTheServerDoesNotHoldIsRefusedByName) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer server(serve_config(model, "1:4"));
  SwarmClient client(client_config({server.address()}));
  client.discover();
  const RemoteSpanCall call{client.peers()[0].peer, {0, 4}, model_fingerprint(model)};
  try {
    remote_forward(client, call, at::zeros({1, 2, 64}));
    FAIL() << "expected an error";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.error().code, core::ErrorCode::span_not_served);
    EXPECT_NE(std::string(e.what()).find("[0, 4)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(server.address()), std::string::npos) << e.what();
  }
}

TEST(Swarm, UnreachablePeerFailsFastWithItsAddress) {
  const auto model = testing::tiny_model("swarm", 6);
  ThreadServer a(serve_config(model, "0:3"));
  // A port nobody listens on: bind one, learn its number, close it.
  std::string dead;
  {
    ThreadServer gone(serve_config(model, "3:6"));
    dead = gone.address();
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    remote_greedy_ids(model, {a.address(), dead}, {1, 2}, 3);
    FAIL() << "expected an error";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.error().code, core::ErrorCode::no_route);
    EXPECT_NE(std::string(e.what()).find("block 3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dead), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

TEST(Swarm, ServerOfAnotherModelIsRefusedWithBothFingerprints) {
  const auto model = testing::tiny_model("swarm", 6);
  // Same config, names and shapes but other weights (a base model and its fine-tune): another
  // model, or a client would mix two networks' activations without noticing.
  const auto other = testing::tiny_model("swarm", 6, /*seed=*/1);
  EXPECT_NE(model_fingerprint(model), model_fingerprint(other));
  // The same weights split into shards are the same model.
  gpu::TinyModelConfig sharded;
  sharded.out = testing::fresh_dir("fingerprint-sharded");
  sharded.layers = 6;
  sharded.shards = 3;
  gpu::write_tiny_checkpoint(sharded);
  EXPECT_EQ(model_fingerprint(model), model_fingerprint(sharded.out));
  // Another shape is another model.
  const auto shallower = testing::tiny_model("swarm", 5);
  ASSERT_NE(model_fingerprint(model), model_fingerprint(shallower));
  ThreadServer a(serve_config(shallower, "0:5"));
  try {
    remote_greedy_ids(model, {a.address()}, {1, 2}, 3);
    FAIL() << "expected an error";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.error().code, core::ErrorCode::no_route);
    EXPECT_NE(std::string(e.what()).find(model_fingerprint(shallower)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(model_fingerprint(model)), std::string::npos) << e.what();
  }
}

TEST(SpanCompute, RunsAnySubSpanOfItsBlocks) {
  const auto model = testing::tiny_model("swarm", 6);
  SpanCompute compute({model, {1, 5}, "f32", "cpu"});
  core::Rng rng(testing::test_seed(9));
  at::Tensor x = at::empty({1, 3, 64}, at::kFloat);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_ptr<float>()[i] = static_cast<float>(rng.normal());
  core::ComputeRequest request;
  request.kind = core::ComputeKind::forward;
  request.span = {2, 4};
  request.inputs = activation_from_tensor(x);
  auto result = compute.run(request);
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  gpu::SpanRunner local({model, 2, 4, "f32", "cpu"});
  EXPECT_TRUE(at::allclose(tensor_from_activation(result.value().outputs), local.forward(x).detach(), 1e-6, 1e-6));
}

TEST(SpanCompute, WrongHiddenSizeIsATypedErrorNotAnException) {
  const auto model = testing::tiny_model("swarm", 6);
  SpanCompute compute({model, {0, 2}, "f32", "cpu"});
  core::ComputeRequest request;
  request.kind = core::ComputeKind::inference;
  request.span = {0, 2};
  request.batch = 1;
  request.new_tokens = 2;
  request.cache_id = 3;
  request.max_length = 8;
  request.inputs = activation_from_tensor(at::zeros({1, 2, 32}));
  auto result = compute.run(request);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, core::ErrorCode::bad_request);
  EXPECT_NE(result.error().message.find("64"), std::string::npos) << result.error().message;
}

}  // namespace
}  // namespace bouquet::net

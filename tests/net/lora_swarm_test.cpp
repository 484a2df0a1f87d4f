// LoRA adapters served per request, servers on threads of the test process and clients over real
// loopback sockets: generation with an adapter gives the ids and logits of the same adapter
// applied locally, routing keeps to servers that hold it, two clients with different adapters on
// the same servers at the same time each get their own result, forward/backward with an adapter
// equal local autograd, and a server asked for an adapter it lacks refuses by name and goes on.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <thread>

#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/generation.h"
#include "gpu/lora.h"
#include "gpu/span_runner.h"
#include "net/client/remote_generation.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/remote_span.h"

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;
using testing::serve_config;
using testing::ThreadServer;

const std::vector<gpu::TokenId> kPrompt = {1, 17, 300, 42, 9};
constexpr int64_t kTokens = 10;

struct Fixture {
  fs::path model;
  fs::path a, b;  // adapters "lora_swarm_a" and "lora_swarm_b"
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture f;
    const uint64_t seed = testing::test_seed(31);
    f.model = testing::tiny_model("lora_swarm", 6);
    f.a = testing::fresh_dir("lora_swarm_a");
    f.b = testing::fresh_dir("lora_swarm_b");
    gpu::write_tiny_adapter({f.model, f.a, 4, 8.0, "q_proj,v_proj", seed});
    gpu::write_tiny_adapter({f.model, f.b, 4, 8.0, "o_proj,up_proj,down_proj", seed + 1});
    return f;
  }();
  return f;
}

ServeConfig with_adapters(const fs::path& model, const std::string& blocks) {
  ServeConfig config = serve_config(model, blocks);
  config.adapters = {fixture().a.string(), fixture().b.string()};
  return config;
}

// Every block in this process with `adapter_dir` loaded (none when empty).
gpu::GenerationResult local_generation(const fs::path& adapter_dir) {
  const Fixture& f = fixture();
  const gpu::ClientHead head({f.model, "f32", "cpu"});
  gpu::SpanRunner blocks({f.model, 0, -1, "f32", "cpu"});
  gpu::GenerationRequest request;
  request.prompt_ids = kPrompt;
  request.max_new_tokens = kTokens;
  request.ignore_eos = true;
  if (!adapter_dir.empty()) request.adapter = blocks.load_adapter(adapter_dir).name();
  gpu::SpanRunner* chain[] = {&blocks};
  return gpu::generate_ids(head, chain, request);
}

RemoteGeneration remote_generation(const std::vector<std::string>& peers, const std::string& adapter) {
  const Fixture& f = fixture();
  const gpu::ClientHead head({f.model, "f32", "cpu"});
  SwarmClientConfig config;
  config.peers = peers;
  SwarmClient client(config);
  gpu::GenerationRequest request;
  request.prompt_ids = kPrompt;
  request.max_new_tokens = kTokens;
  request.ignore_eos = true;
  request.adapter = adapter;
  return generate_remote_ids(head, client, model_fingerprint(f.model), request, {});
}

TEST(LoraSwarm, GenerationWithAnAdapterEqualsLocalAndRoutesToItsHolders) {
  const Fixture& f = fixture();
  // The plain server holds every block; with an adapter only the two adapter servers will do.
  ThreadServer plain(serve_config(f.model, "0:6"));
  ThreadServer first(with_adapters(f.model, "0:3")), second(with_adapters(f.model, "3:6"));
  const std::vector<std::string> peers = {plain.address(), first.address(), second.address()};
  const auto base = local_generation({});
  for (const fs::path& dir : {f.a, f.b}) {
    const std::string name = dir.filename().string();
    SCOPED_TRACE(name);
    const RemoteGeneration remote = remote_generation(peers, name);
    const auto local = local_generation(dir);
    EXPECT_EQ(remote.result.ids, local.ids);
    EXPECT_NE(local.ids, base.ids) << "the adapter does not change the greedy ids";
    ASSERT_EQ(remote.route.size(), 2u);
    EXPECT_EQ(remote.route[0].address, first.address());
    EXPECT_EQ(remote.route[1].address, second.address());
  }
  EXPECT_EQ(remote_generation(peers, "").result.ids, base.ids);

  // Logits of a prefill and a step with adapter a, against the adapter applied locally.
  SwarmClientConfig config;
  config.peers = peers;
  SwarmClient client(config);
  RemoteSessionConfig session_config;
  session_config.session_id = 12;
  session_config.model_id = model_fingerprint(f.model);
  session_config.num_blocks = 6;
  session_config.hidden_size = 64;
  session_config.max_length = 16;
  session_config.adapter = "lora_swarm_a";
  RemoteInferenceSession session(client, session_config);
  session.open();
  const gpu::ClientHead head({f.model, "f32", "cpu"});
  gpu::SpanRunner local({f.model, 0, -1, "f32", "cpu", "none", {f.a}});
  local.open_session(1, 1, 16, "lora_swarm_a");
  for (const auto& ids : {kPrompt, std::vector<gpu::TokenId>{77}}) {
    const at::Tensor remote = head.logits(session.step(head.embed(ids)));
    const at::Tensor expected = head.logits(local.step(1, head.embed(ids)));
    EXPECT_TRUE(at::allclose(remote, expected, 1e-4, 1e-4)) << (remote - expected).abs().max().item<float>();
  }
}

TEST(LoraSwarm, TwoClientsWithDifferentAdaptersAtOnceEachGetTheirOwn) {
  const Fixture& f = fixture();
  ThreadServer first(with_adapters(f.model, "0:4")), second(with_adapters(f.model, "4:6"));
  const std::vector<std::string> peers = {first.address(), second.address()};
  std::vector<gpu::TokenId> ids_a, ids_b;
  for (int round = 0; round < 2; ++round) {
    std::thread client_a([&] { ids_a = remote_generation(peers, "lora_swarm_a").result.ids; });
    std::thread client_b([&] { ids_b = remote_generation(peers, "lora_swarm_b").result.ids; });
    client_a.join();
    client_b.join();
    EXPECT_EQ(ids_a, local_generation(f.a).ids);
    EXPECT_EQ(ids_b, local_generation(f.b).ids);
  }
  EXPECT_NE(ids_a, ids_b);
}

TEST(LoraSwarm, ForwardBackwardWithAnAdapterAndUnknownAdaptersRefused) {
  const Fixture& f = fixture();
  ThreadServer server(with_adapters(f.model, "1:4"));
  SwarmClientConfig config;
  config.peers = {server.address()};
  SwarmClient client(config);
  client.discover();
  at::manual_seed(testing::test_seed(5));
  const at::Tensor x = at::randn({2, 7, 64});
  const at::Tensor g = at::randn({2, 7, 64});
  RemoteSpanCall call{client.peers()[0].peer, {1, 4}, model_fingerprint(f.model)};
  call.adapter = "lora_swarm_b";
  const at::Tensor y_remote = remote_forward(client, call, x);
  const at::Tensor dx_remote = remote_backward(client, call, x, g);
  gpu::SpanRunner local({f.model, 1, 4, "f32", "cpu", "none", {f.b}});
  const gpu::ActiveLora active(local.adapter("lora_swarm_b"));
  const at::Tensor leaf = x.clone().requires_grad_(true);
  const at::Tensor y = local.forward(leaf);
  y.backward(g);
  EXPECT_TRUE(at::allclose(y_remote, y.detach(), 1e-4, 1e-5)) << (y_remote - y).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(dx_remote, leaf.grad(), 1e-4, 1e-5)) << (dx_remote - leaf.grad()).abs().max().item<float>();
  call.adapter = "";
  EXPECT_FALSE(at::allclose(remote_forward(client, call, x), y_remote, 1e-3, 1e-3));

  // An adapter the server lacks: refused by name, for forward and for a session open.
  call.adapter = "lora_swarm_c";
  try {
    remote_forward(client, call, x);
    ADD_FAILURE() << "an unknown adapter was accepted";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.error().code, core::ErrorCode::unknown_adapter);
    EXPECT_NE(std::string(e.what()).find("lora_swarm_c"), std::string::npos) << e.what();
  }
  testing::RawClient raw(server.address());
  core::OpenSession open;
  open.session_id = 3;
  open.model_id = model_fingerprint(f.model);
  open.span = {1, 4};
  open.max_length = 8;
  open.batch = 1;
  open.adapter = "lora_swarm_c";
  const auto refused = raw.call<core::ErrorReply>(open);
  EXPECT_EQ(refused.error.code, core::ErrorCode::unknown_adapter);
  EXPECT_NE(refused.error.message.find("lora_swarm_c"), std::string::npos) << refused.error.message;
  // The server keeps serving, adapters included.
  call.adapter = "lora_swarm_b";
  EXPECT_TRUE(at::allclose(remote_forward(client, call, x), y_remote, 1e-6, 1e-6));
  // And it announces what it holds.
  const auto info = raw.call<core::InfoReply>(core::InfoRequest{9});
  EXPECT_EQ(info.adapters, (std::vector<std::string>{"lora_swarm_a", "lora_swarm_b"}));
}

}  // namespace
}  // namespace bouquet::net

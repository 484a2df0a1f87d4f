// Chunked prefill on real servers (core/block_server.h): a long prompt computed in chunks
// through the engine's multi-token steps on an existing cache gives the outputs of the same
// prompt computed at once, while another client decodes on the same servers.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/span_runner.h"
#include "net/client/remote_generation.h"
#include "net/client/remote_session.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using testing::serve_config;
using testing::ThreadServer;

// Two servers holding blocks [0, 3) and [3, 6), chunking steps of more than `chunk` rows.
std::vector<std::unique_ptr<ThreadServer>> servers(const std::filesystem::path& model, uint32_t chunk) {
  std::vector<std::unique_ptr<ThreadServer>> out;
  for (const char* blocks : {"0:3", "3:6"}) {
    ServeConfig config = serve_config(model, blocks);
    config.max_batch = 8;
    config.prefill_chunk = chunk;
    out.push_back(std::make_unique<ThreadServer>(config));
  }
  return out;
}

SwarmClientConfig client_config(const std::vector<std::unique_ptr<ThreadServer>>& servers) {
  SwarmClientConfig config;
  for (const auto& s : servers) config.peers.push_back(s->address());
  return config;
}

// One step of `hidden` through the servers, as a single message.
at::Tensor remote_step(const std::filesystem::path& model, const std::vector<std::unique_ptr<ThreadServer>>& servers,
                       const at::Tensor& hidden) {
  SwarmClient client(client_config(servers));
  RemoteSessionConfig config;
  config.session_id = 9;
  config.model_id = model_fingerprint(model);
  config.num_blocks = 6;
  config.hidden_size = 64;
  config.max_length = 64;
  RemoteInferenceSession session(client, config);
  session.open();
  EXPECT_GE(session.max_step_tokens(), static_cast<uint32_t>(hidden.size(1))) << "one message per step";
  return session.step(hidden);
}

TEST(PrefillChunk, AChunkedPromptGivesTheOutputsOfThePromptComputedAtOnceWhileAnotherClientDecodes) {
  const auto model = testing::tiny_model("prefill_chunk", 6);
  const gpu::ClientHead head({model, "f32", "cpu"});
  std::vector<gpu::TokenId> ids;
  for (int i = 0; i < 37; ++i) ids.push_back(5 + 11 * i);
  const at::Tensor hidden = head.embed(ids);

  const auto whole = servers(model, 0);
  const at::Tensor at_once = remote_step(model, whole, hidden);
  EXPECT_EQ(whole[0]->server().computations_started(), 1u);

  const auto chunked = servers(model, 4);
  const std::vector<gpu::TokenId> decoder_prompt = {3, 1, 4};
  std::vector<gpu::TokenId> decoded;
  std::thread decoder([&] {
    SwarmClient client(client_config(chunked));
    gpu::GenerationRequest request;
    request.prompt_ids = decoder_prompt;
    request.max_new_tokens = 16;
    request.ignore_eos = true;
    decoded = generate_remote_ids(head, client, model_fingerprint(model), request, {}).result.ids;
  });
  const at::Tensor in_chunks = remote_step(model, chunked, hidden);
  decoder.join();
  ASSERT_EQ(in_chunks.sizes(), at_once.sizes());
  EXPECT_TRUE(at::allclose(in_chunks, at_once, 1e-5, 1e-5)) << (in_chunks - at_once).abs().max().item<float>();
  EXPECT_GE(chunked[0]->server().computations_started(), 10u) << "37 positions in chunks of 4";
  EXPECT_EQ(decoded, testing::local_greedy_ids(model, decoder_prompt, 16));

  gpu::SpanRunner local({model, 0, -1, "f32", "cpu"});
  local.open_session(1, 1, 64);
  const at::Tensor expected = local.step(1, hidden);
  EXPECT_TRUE(at::allclose(in_chunks, expected, 1e-5, 1e-5)) << (in_chunks - expected).abs().max().item<float>();
}

}  // namespace
}  // namespace bouquet::net

// Helpers shared by the net tests: scratch folders, tiny checkpoints, local reference runs, a
// server on a thread of the test process, and a raw blocking client that speaks bytes.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "core/compute.h"
#include "core/messages.h"
#include "core/server_record.h"
#include "net/rpc/frame.h"
#include "net/server/server.h"
#include "tokenizer/tokenizer.h"

namespace bouquet::net::testing {

// $BOUQUET_SEED or `fallback`; prints the seed and the command that reproduces the test.
uint64_t test_seed(uint64_t fallback);

// An empty folder for one test, under the GoogleTest temp dir.
std::filesystem::path fresh_dir(std::string_view name);

// A tiny Llama checkpoint (no tokenizer) written once per process per (name, layers, seed):
// hidden 64, 4 heads, 2 kv heads, vocab 512.
std::filesystem::path tiny_model(std::string_view name, int64_t layers = 6, uint64_t seed = 0);

// Greedy ids of every block run in this process (gpu::generate_ids), the reference a swarm
// must reproduce.
std::vector<gpu::TokenId> local_greedy_ids(const std::filesystem::path& model, const std::vector<gpu::TokenId>& prompt,
                                           int64_t count);

// A ServeConfig for `blocks` ("A:B") of `model`, listening on 127.0.0.1:0.
ServeConfig serve_config(const std::filesystem::path& model, std::string blocks);
// A directory's record of an online server of `model_id` at `address` holding `span`, with room
// to spare (throughput 100, 4096 free cache tokens), that never expires.
core::ServerRecord online_record(core::PeerId peer, const std::string& address, const std::string& model_id,
                                 core::BlockSpan span = {0, 4});
// A SwarmClientConfig for these peers, default timeouts.

// A net::Server serving on a thread of this process; stopped and joined on destruction.
class ThreadServer {
 public:
  explicit ThreadServer(const ServeConfig& config);
  ~ThreadServer();
  const std::string& address() const { return address_; }
  Server& server() { return *server_; }

 private:
  std::unique_ptr<Server> server_;
  std::string address_;
  std::thread thread_;
};

// What a raw read returned: a decoded message, a frame whose body did not decode, or the end of
// the connection (closed or nothing within the timeout).
struct Closed {};
struct TimedOut {};
using ReadResult = std::variant<core::Message, core::Error, Closed, TimedOut>;

// A blocking TCP client that writes arbitrary bytes and reads frames, for poking servers.
class RawClient {
 public:
  explicit RawClient(const std::string& address);
  ~RawClient();
  void send_bytes(const std::vector<uint8_t>& bytes);
  void send(const core::Message& message) { send_bytes(encode_frame(message)); }
  // Stops sending (a TCP half-close); reading still works.
  void shutdown_send();
  // The next frame, decoded; body_bytes gets its body length.
  ReadResult read(double timeout_s = 10, uint64_t* body_bytes = nullptr);
  // Sends `request` and returns the reply, which must be a message of type M.
  template <class M>
  M call(const core::Message& request, double timeout_s = 10);

 private:
  int fd_ = -1;
  FrameParser parser_{uint64_t{1} << 30};
};

std::string describe(const ReadResult& result);

template <class M>
M RawClient::call(const core::Message& request, double timeout_s) {
  send(request);
  ReadResult r = read(timeout_s);
  if (auto* m = std::get_if<core::Message>(&r); m && std::holds_alternative<M>(*m)) return std::get<M>(*m);
  throw std::runtime_error("unexpected reply: " + describe(r));
}

// An open of blocks [0, 2) for one sequence of `max_length` positions, queued up to `wait_s` for
// cache room: what the hostile-client, hostile-load and abuse-load tests send a 2-block server.
core::OpenSession open_blocks_0_2(const std::string& model_id, uint64_t id, uint32_t max_length, double wait_s = 0);

// An inference step of `span` on cache `cache` (also its task id): x's positions from `start`, a
// cache of `max_length` positions; what the SpanCompute tests run.
core::ComputeRequest inference_step(core::BlockSpan span, core::CacheId cache, const at::Tensor& x, uint32_t start,
                                    uint32_t max_length = 64);
// A computation's outputs as a tensor; a failed computation fails the test (undefined tensor).
at::Tensor compute_outputs(const core::Result<core::ComputeOutput>& result);

}  // namespace bouquet::net::testing

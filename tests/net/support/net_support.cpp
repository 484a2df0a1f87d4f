#include "tests/net/support/net_support.h"

#include "gpu/tensor_bridge.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "gpu/client_head.h"
#include "gpu/generation.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "net/rpc/address.h"

namespace bouquet::net::testing {
namespace fs = std::filesystem;

uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("BOUQUET_SEED"); env && *env) seed = std::strtoull(env, nullptr, 0);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = info ? fmt::format("{}.{}", info->test_suite_name(), info->name()) : "*";
  std::error_code ec;
  const auto binary = fs::read_symlink("/proc/self/exe", ec);
  fmt::print("seed {} (reproduce: BOUQUET_SEED={} {} --gtest_filter='{}')\n", seed, seed,
             ec ? "net_tests" : binary.string(), filter);
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

fs::path fresh_dir(std::string_view name) {
  const fs::path dir = fs::path(::testing::TempDir()) / fmt::format("bouquet-net-{}", ::getpid()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

fs::path tiny_model(std::string_view name, int64_t layers, uint64_t seed) {
  static std::mutex mutex;
  static std::map<std::string, fs::path> made;
  std::lock_guard lock(mutex);
  const std::string key = fmt::format("{}-{}-{}", name, layers, seed);
  if (auto it = made.find(key); it != made.end()) return it->second;
  const fs::path dir = fresh_dir("model-" + key);
  gpu::TinyModelConfig config;
  config.out = dir;
  config.layers = layers;
  config.seed = seed;
  gpu::write_tiny_checkpoint(config);
  made[key] = dir;
  return dir;
}

std::vector<gpu::TokenId> local_greedy_ids(const fs::path& model, const std::vector<gpu::TokenId>& prompt,
                                           int64_t count) {
  const gpu::ClientHead head({model, "f32", "cpu"});
  gpu::SpanRunner blocks({model, 0, -1, "f32", "cpu"});
  gpu::GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = count;
  request.ignore_eos = true;
  gpu::SpanRunner* chain[] = {&blocks};
  return gpu::generate_ids(head, chain, request).ids;
}

ServeConfig serve_config(const fs::path& model, std::string blocks) {
  ServeConfig config;
  config.model = model.string();
  config.blocks = std::move(blocks);
  return config;
}

core::ServerRecord online_record(core::PeerId peer, const std::string& address, const std::string& model_id,
                                 core::BlockSpan span) {
  core::ServerRecord r;
  r.peer = peer;
  r.address = address;
  r.span = span;
  r.state = core::ServerState::online;
  r.throughput_rps = 100;
  r.inference_rps = 100;
  r.cache_tokens_free = 4096;
  r.model_id = model_id;
  r.expires_at = core::kNever;
  return r;
}

ThreadServer::ThreadServer(const ServeConfig& config) : server_(std::make_unique<Server>(config)) {
  address_ = server_->listen_address();
  thread_ = std::thread([this] { server_->run(); });
}

ThreadServer::~ThreadServer() {
  server_->stop();
  thread_.join();
}

RawClient::RawClient(const std::string& address) {
  const HostPort hp = parse_host_port(address);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &found) != 0 || !found) {
    throw std::runtime_error("cannot resolve " + address);
  }
  fd_ = ::socket(found->ai_family, SOCK_STREAM, 0);
  const int rc = ::connect(fd_, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0) throw std::runtime_error("cannot connect to " + address);
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::send_bytes(const std::vector<uint8_t>& bytes) {
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send failed (connection closed?)");
    at += static_cast<size_t>(n);
  }
}

void RawClient::shutdown_send() { ::shutdown(fd_, SHUT_WR); }

ReadResult RawClient::read(double timeout_s, uint64_t* body_bytes) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    if (auto body = parser_.next()) {
      if (body_bytes) *body_bytes = body->size();
      auto decoded = decode_body(*body, FrameLimits{});
      if (!decoded.ok()) return decoded.error();
      return std::move(decoded).value();
    }
    if (parser_.failed()) return parser_.error();
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return TimedOut{};
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    uint8_t buffer[65536];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) return Closed{};
    parser_.feed(std::span<const uint8_t>(buffer, static_cast<size_t>(n)));
  }
}

std::string describe(const ReadResult& result) {
  if (auto* m = std::get_if<core::Message>(&result)) {
    if (auto* e = std::get_if<core::ErrorReply>(m)) return "error reply: " + e->error.to_string();
    return std::string(core::to_string(core::message_type(*m)));
  }
  if (auto* e = std::get_if<core::Error>(&result)) return "undecodable frame: " + e->to_string();
  if (std::holds_alternative<Closed>(result)) return "connection closed";
  return "timed out";
}

core::OpenSession open_blocks_0_2(const std::string& model_id, uint64_t id, uint32_t max_length, double wait_s) {
  core::OpenSession open;
  open.session_id = id;
  open.model_id = model_id;
  open.span = {0, 2};
  open.max_length = max_length;
  open.batch = 1;
  open.cache_wait_timeout_s = wait_s;
  return open;
}

core::ComputeRequest inference_step(core::BlockSpan span, core::CacheId cache, const at::Tensor& x, uint32_t start,
                                    uint32_t max_length) {
  core::ComputeRequest r;
  r.task_id = cache;
  r.kind = core::ComputeKind::inference;
  r.span = span;
  r.batch = static_cast<uint32_t>(x.size(0));
  r.new_tokens = static_cast<uint32_t>(x.size(1));
  r.cache_length = start;
  r.cache_id = cache;
  r.max_length = max_length;
  r.inputs = activation_from_tensor(x, core::Compression::none);
  return r;
}

at::Tensor compute_outputs(const core::Result<core::ComputeOutput>& result) {
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
  return result.ok() ? tensor_from_activation(result.value().outputs) : at::Tensor();
}

}  // namespace bouquet::net::testing

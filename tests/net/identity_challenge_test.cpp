// The identity challenge (core/identity_proof.h) with servers on threads of this process: an
// impostor (a server with its own key, at the address a victim's signed record names) is refused
// by name when the client's InfoRequest challenges it, before any plan, and generation and
// fine-tuning give the local results through the honest server; so are a version-3 server (which
// cannot read a challenged info request) and one that answers without a proof; one that proves
// itself at discovery but not at the open is refused there and the session re-routes; a server
// answers a challenge with a proof that verifies, and a client without the challenge (wire
// version 2) still gets its sessions, with replies it can read.
#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>

#include "core/identity_proof.h"
#include "core/wire.h"
#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/prompt_tuning.h"
#include "gpu/span_runner.h"
#include "net/client/remote_chain.h"
#include "net/client/remote_generation.h"
#include "net/dht/identity.h"
#include "net/rpc/frame.h"
#include "tests/net/support/identities.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using testing::serve_config;
using testing::ThreadServer;

constexpr int64_t kTokens = 8;

core::PeerId keyed(ServeConfig& config, const std::string& name) {
  return testing::give_own_key(config, "identity-" + name);
}

struct Swarm {
  std::filesystem::path model = testing::tiny_model("identity", 4);
  std::string model_id = model_fingerprint(model);
  ServeConfig impostor_config = serve_config(model, "0:4");
  ServeConfig honest_config = serve_config(model, "0:4");
  core::PeerId impostor_key = keyed(impostor_config, "impostor");
  core::PeerId honest_key = keyed(honest_config, "honest");
  ThreadServer impostor{impostor_config};
  ThreadServer honest{honest_config};

  // A client that knows the impostor's address from the victim's signed record (test_peer(1):
  // the record is genuine, the server there is not the victim), and the honest server's, as a
  // DHT lookup gives them (the impostor's first: greedy routing would try it first).
  SwarmClientConfig client_config() const {
    SwarmClientConfig c;
    c.peers = {impostor.address(), honest.address()};
    c.identities[impostor.address()] = {testing::test_peer(1)};
    c.identities[honest.address()] = {honest_key};
    c.directory = [this] {
      return std::vector<core::ServerRecord>{
          testing::online_record(testing::test_peer(1), impostor.address(), model_id),
          testing::online_record(honest_key, honest.address(), model_id)};
    };
    return c;
  }
};

gpu::GenerationRequest request() {
  gpu::GenerationRequest r;
  r.prompt_ids = {1, 17, 300, 42};
  r.max_new_tokens = kTokens;
  r.ignore_eos = true;
  return r;
}

// A server that answers from a script, on a thread: for each message (and the wire version its
// body came in), the reply, if any. Stands in for servers this build would never be: one that
// speaks only wire version 2, one that skips the proof.
class ScriptedServer {
 public:
  using Script = std::function<std::optional<core::Message>(const core::Message&, uint16_t version)>;
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof addr;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), size), 0);
    EXPECT_EQ(::listen(listen_fd_, 8), 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &size);
    address_ = fmt::format("127.0.0.1:{}", ntohs(addr.sin_port));
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  const std::string& address() const { return address_; }

 private:
  void serve() {
    std::vector<std::pair<int, FrameParser>> connections;
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& [fd, parser] : connections) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) connections.emplace_back(::accept(listen_fd_, nullptr, nullptr), FrameParser{});
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        auto& [fd, parser] = connections[i - 1];
        uint8_t buffer[65536];
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) continue;
        parser.feed(std::span<const uint8_t>(buffer, static_cast<size_t>(n)));
        while (auto body = parser.next()) {
          auto decoded = decode_body(*body, FrameLimits{});
          if (!decoded.ok()) continue;
          const auto version = static_cast<uint16_t>((*body)[0] | ((*body)[1] << 8));
          if (auto reply = script_(decoded.value(), version)) {
            const auto bytes = encode_frame(*reply);
            (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
          }
        }
      }
    }
    for (auto& [fd, parser] : connections) ::close(fd);
  }

  Script script_;
  int listen_fd_ = -1;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(IdentityChallenge, AServerThatCannotOrDoesNotProveItsIdentityIsRefusedAndTheSessionGoesOn) {
  const auto model = testing::tiny_model("identity", 4);
  const std::string model_id = model_fingerprint(model);
  const gpu::ClientHead head({model, "f32", "cpu"});
  const auto hidden = static_cast<uint32_t>(head.model_config().hidden_size);
  ThreadServer honest(serve_config(model, "0:4"));
  // A key the scripted server may prove at discovery, to be refused only at the open.
  const PeerIdentity& key = testing::test_identity(3);
  enum class Fake { version_3, no_proof_at_info, no_proof_at_open };
  for (const Fake fake_kind : {Fake::version_3, Fake::no_proof_at_info, Fake::no_proof_at_open}) {
    SCOPED_TRACE(fake_kind == Fake::version_3          ? "a version-3 server"
                 : fake_kind == Fake::no_proof_at_info ? "a server that skips the proof at discovery"
                                                       : "a server that skips the proof at the open");
    ScriptedServer fake([&](const core::Message& m, uint16_t version) -> std::optional<core::Message> {
      // What a version-3 build answers to a version-4 body (wire.cpp's bad_version, as an ErrorReply).
      if (fake_kind == Fake::version_3 && version > 3) {
        return core::ErrorReply{
            0, 0, core::Error{core::ErrorCode::protocol, "wire version 4 (this build speaks 2 to 3) (bad_version)"}};
      }
      if (const auto* info = std::get_if<core::InfoRequest>(&m)) {
        core::InfoReply reply{info->request_id, model_id, core::BlockSpan{0, 4}, hidden, "bouquet 0.1", 8192, 8192};
        if (fake_kind == Fake::no_proof_at_open && info->identity_nonce) {
          reply.identity_proof = core::IdentityProof{
              key.public_key_bytes(),
              key.sign_bytes(core::identity_proof_message(*info->identity_nonce, key.peer_id(), model_id))};
        }
        return reply;
      }
      const auto* open = std::get_if<core::OpenSession>(&m);
      if (!open) return std::nullopt;
      return core::SessionOpened{open->session_id, std::nullopt};
    });
    SwarmClientConfig config;
    config.peers = {fake.address(), honest.address()};  // greedy routing tries the first one first
    ::testing::internal::CaptureStderr();
    SwarmClient client(config);
    const RemoteGeneration generation = generate_remote_ids(head, client, model_id, request(), {});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(generation.result.ids, testing::local_greedy_ids(model, request().prompt_ids, kTokens));
    ASSERT_EQ(generation.route.size(), 1u);
    EXPECT_EQ(generation.route[0].address, honest.address());
    EXPECT_NE(err.find(fmt::format("refusing server {} failed the identity challenge", fake.address())),
              std::string::npos)
        << err;
    if (fake_kind == Fake::no_proof_at_open) {
      // Proven at discovery, so routed to; refused at the open, and the session re-routes.
      EXPECT_EQ(client.pins().at(fake.address()).key, key.peer_id());
      ASSERT_EQ(generation.recoveries.size(), 1u);
      EXPECT_EQ(generation.recoveries[0].failed_peer, fake.address());
      const std::string& cause = generation.recoveries[0].cause;
      EXPECT_NE(cause.find("identity_refused"), std::string::npos) << cause;
      EXPECT_NE(cause.find("answered without an identity proof"), std::string::npos) << cause;
      continue;
    }
    // Refused at discovery: never routed to, so nothing to recover from.
    EXPECT_TRUE(generation.recoveries.empty());
    const PeerStatus& status = client.peers()[0];
    ASSERT_EQ(status.address, fake.address());
    EXPECT_FALSE(status.info.has_value()) << "its info is not routed by";
    EXPECT_NE(status.error.find("identity_refused"), std::string::npos) << status.error;
    EXPECT_NE(status.error.find(fake_kind == Fake::version_3 ? "cannot prove its identity"
                                                             : "answered without an identity proof"),
              std::string::npos)
        << status.error;
    ASSERT_TRUE(client.pins().contains(fake.address()));
    EXPECT_FALSE(client.pins().at(fake.address()).key.has_value());
  }
}

TEST(IdentityChallenge, GenerationRefusesAnImpostorByNameAtDiscoveryAndGivesTheLocalIdsThroughTheHonestServer) {
  Swarm swarm;
  ASSERT_NE(swarm.impostor_key, testing::test_peer(1));
  const gpu::ClientHead head({swarm.model, "f32", "cpu"});
  ::testing::internal::CaptureStderr();
  SwarmClient client(swarm.client_config());
  const RemoteGeneration generation = generate_remote_ids(head, client, swarm.model_id, request(), {});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(generation.result.ids, testing::local_greedy_ids(swarm.model, request().prompt_ids, kTokens));
  ASSERT_EQ(generation.route.size(), 1u);
  EXPECT_EQ(generation.route[0].address, swarm.honest.address()) << "the session is ready only on a proven server";
  EXPECT_TRUE(generation.recoveries.empty()) << "refused before any plan";
  EXPECT_NE(err.find(fmt::format("refusing server {} failed the identity challenge", swarm.impostor.address())),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(swarm.impostor_key.to_string()), std::string::npos) << "names the key it holds: " << err;
  const PeerStatus& impostor = client.peers()[0];
  ASSERT_EQ(impostor.address, swarm.impostor.address());
  EXPECT_NE(impostor.error.find("identity_refused"), std::string::npos) << impostor.error;
  // The victim's record at the impostor's address is dropped, and said so.
  EXPECT_NE(err.find(fmt::format("dropping the record of peer {} at {}: the server there did not prove its identity",
                                 testing::test_peer(1).to_string(), swarm.impostor.address())),
            std::string::npos)
      << err;
}

TEST(IdentityChallenge, FineTuningRefusesAnImpostorAndItsForwardEqualsTheLocalOne) {
  Swarm swarm;
  SwarmClient client(swarm.client_config());
  RemoteChainConfig config;
  config.model_id = swarm.model_id;
  config.num_blocks = 4;
  RemoteChain chain(client, config);
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 5, 64});
  const at::Tensor remote = chain.forward(x, {});
  const gpu::SpanRunner blocks({swarm.model, 0, -1, "f32", "cpu"});
  gpu::LocalPassChain local(blocks);
  EXPECT_TRUE(at::allclose(remote, local.forward(x, {}), 1e-4, 1e-5));
  EXPECT_EQ(chain.impostors(), std::vector<std::string>{swarm.impostor.address()});
  EXPECT_TRUE(chain.retries().empty()) << "refused at discovery, before any hop";
  for (const core::Chain& c : chain.chains()) {
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(client.address_of(c[0].peer), swarm.honest.address());
  }
  // The backward too goes only to the honest server, and a later pass's directory read keeps
  // the victim's record at the impostor's address out.
  chain.backward(at::ones_like(remote));
  for (int pass = 0; pass < 2; ++pass) {
    const at::Tensor y = chain.forward(x, {});
    EXPECT_TRUE(at::allclose(y, local.forward(x, {}), 1e-4, 1e-5));
    chain.backward(at::ones_like(y));
  }
  EXPECT_EQ(chain.impostors().size(), 1u);
  EXPECT_TRUE(chain.retries().empty());
}

TEST(IdentityChallenge, AServerSignsTheNonceItsPeerIdAndModelAndAnOldClientGetsVersionTwoReplies) {
  const auto model = testing::tiny_model("identity", 4);
  const std::string model_id = model_fingerprint(model);
  ServeConfig config = serve_config(model, "0:4");
  const core::PeerId key = keyed(config, "proof");
  ThreadServer server(config);
  testing::RawClient raw(server.address());

  core::OpenSession open = testing::open_blocks_0_2(model_id, 1, 16);
  const auto old = raw.call<core::SessionOpened>(open);
  EXPECT_FALSE(old.identity_proof.has_value());
  EXPECT_EQ(core::wire_version_of(old), 2) << "what a version-2 client reads";

  open.session_id = 2;
  open.identity_nonce = PeerIdentity::random_bytes(core::kIdentityNonceBytes);
  const auto proven = raw.call<core::SessionOpened>(open);
  ASSERT_TRUE(proven.identity_proof.has_value());
  const core::IdentityProof& proof = *proven.identity_proof;
  EXPECT_EQ(PeerIdentity::peer_id_of_key_bytes(proof.public_key), key);
  EXPECT_TRUE(PeerIdentity::verify_bytes(
      proof.public_key, core::identity_proof_message(*open.identity_nonce, key, model_id), proof.signature));
  // Bound to this nonce and this model: replayed for another, it does not verify.
  EXPECT_FALSE(PeerIdentity::verify_bytes(
      proof.public_key, core::identity_proof_message(std::string(core::kIdentityNonceBytes, 'x'), key, model_id),
      proof.signature));
  EXPECT_FALSE(PeerIdentity::verify_bytes(
      proof.public_key, core::identity_proof_message(*open.identity_nonce, key, "another model"), proof.signature));

  // Asked who it is (address pinning, wire version 4), it signs the info request's nonce and the
  // model id its reply names; asked without a nonce, it answers as a version-2 server does.
  const auto plain_info = raw.call<core::InfoReply>(core::InfoRequest{9});
  EXPECT_FALSE(plain_info.identity_proof.has_value());
  EXPECT_EQ(core::wire_version_of(plain_info), 2);
  core::InfoRequest asked{10, PeerIdentity::random_bytes(core::kIdentityNonceBytes)};
  const auto info = raw.call<core::InfoReply>(asked);
  ASSERT_TRUE(info.identity_proof.has_value());
  EXPECT_EQ(info.model_id, model_id);
  EXPECT_EQ(PeerIdentity::peer_id_of_key_bytes(info.identity_proof->public_key), key);
  EXPECT_TRUE(PeerIdentity::verify_bytes(info.identity_proof->public_key,
                                         core::identity_proof_message(*asked.identity_nonce, key, model_id),
                                         info.identity_proof->signature));

  // A whole generation without the challenge, as a version-2 client runs it.
  SwarmClientConfig plain;
  plain.peers = {server.address()};
  plain.challenge_identity = false;
  SwarmClient client(plain);
  const gpu::ClientHead head({model, "f32", "cpu"});
  EXPECT_EQ(generate_remote_ids(head, client, model_id, request(), {}).result.ids,
            testing::local_greedy_ids(model, request().prompt_ids, kTokens));
}

}  // namespace
}  // namespace bouquet::net

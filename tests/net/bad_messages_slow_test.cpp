// Every kind of bad input, sent as raw bytes to a live `bouquet serve` process: each one is
// answered with an ErrorReply naming the problem (and, when the byte stream itself can no longer
// be trusted, the connection is closed), and afterwards the same server still serves a normal
// client correctly.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/tensor_bridge.h"
#include "net/client/remote_generation.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using core::ErrorCode;
using testing::RawClient;
using testing::ThreadServer;

class BadMessages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::filesystem::path(testing::tiny_model("bad", 4));
    servers_ = new std::vector<ServerProcess>(
        testing::start_servers(*model_, {"1:3"}, {"--frame-timeout", "1", "--max-frame-bytes", "1000000"}));
  }
  static void TearDownTestSuite() {
    delete servers_;
    delete model_;
  }
  void TearDown() override { ASSERT_TRUE((*servers_)[0].running()) << "the server died"; }

  static const std::string& address() { return (*servers_)[0].address(); }
  static std::string model_id() { return model_fingerprint(*model_); }

  // Expects an ErrorReply with `code` whose message contains `text`.
  static void expect_error(const testing::ReadResult& r, ErrorCode code, const std::string& text) {
    const auto* m = std::get_if<core::Message>(&r);
    ASSERT_TRUE(m && std::holds_alternative<core::ErrorReply>(*m)) << testing::describe(r);
    const core::Error& e = std::get<core::ErrorReply>(*m).error;
    EXPECT_EQ(e.code, code) << e.to_string();
    EXPECT_NE(e.message.find(text), std::string::npos) << e.to_string();
  }
  static void expect_closed(RawClient& client) {
    const auto r = client.read(5);
    EXPECT_TRUE(std::holds_alternative<testing::Closed>(r)) << testing::describe(r);
  }
  // The connection still answers an InfoRequest.
  static void expect_alive(RawClient& client) {
    const auto info = client.call<core::InfoReply>(core::InfoRequest{31});
    EXPECT_EQ(info.request_id, 31u);
  }

  static core::OpenSession open_session(uint64_t id, core::BlockSpan span = {1, 3}) {
    core::OpenSession open;
    open.session_id = id;
    open.model_id = model_id();
    open.span = span;
    open.max_length = 16;
    open.batch = 1;
    return open;
  }
  static core::StepRequest step(uint64_t session, uint32_t start, int64_t tokens, int64_t hidden = 64) {
    core::StepRequest s;
    s.session_id = session;
    s.step_id = start + 1;
    s.start_position = start;
    s.hidden_states = activation_from_tensor(at::ones({1, tokens, hidden}) * 0.1);
    return s;
  }

  static std::filesystem::path* model_;
  static std::vector<ServerProcess>* servers_;
};

std::filesystem::path* BadMessages::model_ = nullptr;
std::vector<ServerProcess>* BadMessages::servers_ = nullptr;

TEST_F(BadMessages, GarbageBytesGetAnErrorAndAClose) {
  RawClient client(address());
  client.send_bytes({'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'});
  expect_error(client.read(), ErrorCode::protocol, "bad magic");
  expect_closed(client);
}

TEST_F(BadMessages, LengthPrefixOfTwoToThe63GetsAnErrorAndAClose) {
  RawClient client(address());
  client.send_bytes(frame_header(uint64_t{1} << 63));
  expect_error(client.read(), ErrorCode::protocol, "9223372036854775808 bytes exceeds the limit");
  expect_closed(client);
}

TEST_F(BadMessages, HalfFrameThenHalfCloseGetsAnErrorNamingHowFarItGot) {
  RawClient client(address());
  const auto frame = encode_frame(core::InfoRequest{1});
  client.send_bytes(std::vector<uint8_t>(frame.begin(), frame.begin() + 14));
  client.shutdown_send();
  expect_error(client.read(), ErrorCode::protocol, "closed inside a frame (2 of");
  expect_closed(client);
}

TEST_F(BadMessages, HalfFrameThatStallsIsDroppedAfterTheFrameTimeout) {
  RawClient client(address());
  const auto frame = encode_frame(core::InfoRequest{1});
  client.send_bytes(std::vector<uint8_t>(frame.begin(), frame.begin() + 7));
  expect_error(client.read(/*timeout_s=*/10), ErrorCode::protocol, "not complete within 1 s (7 of 12 header bytes)");
  expect_closed(client);
}

TEST_F(BadMessages, UndecodableBodyInAnIntactFrameIsAnsweredAndTheConnectionKept) {
  RawClient client(address());
  std::vector<uint8_t> body = {static_cast<uint8_t>(core::kWireVersion), 0, 99, 1, 2, 3};  // message type 99
  auto frame = frame_header(body.size());
  frame.insert(frame.end(), body.begin(), body.end());
  client.send_bytes(frame);
  expect_error(client.read(), ErrorCode::protocol, "unknown message type 99");
  expect_alive(client);
}

TEST_F(BadMessages, FingerprintMismatchIsRefused) {
  RawClient client(address());
  auto open = open_session(1);
  open.model_id = "0000000000000000";
  client.send(open);
  expect_error(client.read(), ErrorCode::model_mismatch, model_id());
  expect_alive(client);
}

TEST_F(BadMessages, SpanNotHeldIsRefused) {
  RawClient client(address());
  client.send(open_session(1, {0, 3}));
  expect_error(client.read(), ErrorCode::span_not_served, "[0, 3)");
  expect_alive(client);
}

TEST_F(BadMessages, UnknownSessionIsRefused) {
  RawClient client(address());
  client.send(step(12345, 0, 2));
  expect_error(client.read(), ErrorCode::unknown_session, "12345");
  expect_alive(client);
}

TEST_F(BadMessages, WrongHiddenSizeIsRefused) {
  RawClient client(address());
  client.call<core::SessionOpened>(open_session(7));
  client.send(step(7, 0, 2, /*hidden=*/48));
  expect_error(client.read(), ErrorCode::bad_request, "expected [batch, tokens, 64]");
  // The session is intact: a correct step at position 0 still works.
  const auto result = client.call<core::StepResult>(step(7, 0, 2));
  EXPECT_EQ(result.hidden_states.shape, (std::vector<uint32_t>{1, 2, 64}));
}

TEST_F(BadMessages, SkippedPositionAndPositionsPastMaxLengthAreRefused) {
  RawClient client(address());
  client.call<core::SessionOpened>(open_session(8));
  client.call<core::StepResult>(step(8, 0, 3));
  client.send(step(8, 5, 1));  // 3 positions cached: 5 skips 3 and 4
  expect_error(client.read(), ErrorCode::bad_position, "skips past the 3 cached positions");
  client.send(step(8, 3, 14));  // 3 + 14 > max_length 16
  expect_error(client.read(), ErrorCode::bad_position, "exceed the session's max_length 16");
  // A rewind within the cache is allowed and recomputes the same outputs.
  const auto again = client.call<core::StepResult>(step(8, 0, 3));
  EXPECT_EQ(again.start_position, 0u);
}

TEST_F(BadMessages, OversizedTensorClaimIsRefusedWithoutReadingIt) {
  // A frame under the limit whose tensor claims 2^31 elements: the decoder refuses it by the
  // wire's element limit before allocating.
  RawClient client(address());
  auto body = core::encode(step(1, 0, 1));
  // Tensor header of hidden_states: after version(2) type(1) session(8) step(8) start(4):
  // dtype(1) compression(1) rank(1) dims(3 x 4).
  const size_t dims = 2 + 1 + 8 + 8 + 4 + 3;
  body[dims + 4] = 0x00;
  body[dims + 5] = 0x00;
  body[dims + 6] = 0x00;
  body[dims + 7] = 0x80;  // tokens = 2^31
  auto frame = frame_header(body.size());
  frame.insert(frame.end(), body.begin(), body.end());
  client.send_bytes(frame);
  expect_error(client.read(), ErrorCode::protocol, "step.hidden_states");
  expect_alive(client);
}

TEST_F(BadMessages, TheServerStillServesANormalClientAfterAllOfThem) {
  // Every case again, back to back on separate connections, then a real generation.
  for (int i = 0; i < 3; ++i) {
    RawClient garbage(address());
    garbage.send_bytes(std::vector<uint8_t>(100, 0xff));
    RawClient huge(address());
    huge.send_bytes(frame_header(~uint64_t{0}));
  }
  const auto model = *model_;
  ThreadServer head_half(testing::serve_config(model, "0:1"));
  ThreadServer tail_half(testing::serve_config(model, "3:4"));
  SwarmClientConfig config;
  config.peers = {head_half.address(), address(), tail_half.address()};
  SwarmClient client(config);
  const gpu::ClientHead head({model, "f32", "cpu"});
  gpu::GenerationRequest request;
  request.prompt_ids = {1, 40, 41, 42};
  request.max_new_tokens = 8;
  request.ignore_eos = true;
  const auto generation = generate_remote_ids(head, client, model_id(), request, {});
  EXPECT_EQ(generation.result.ids, testing::local_greedy_ids(model, request.prompt_ids, 8));
  ASSERT_EQ(generation.route.size(), 3u);
  EXPECT_EQ(generation.route[1].address, address());
}

}  // namespace
}  // namespace bouquet::net

// Frames: the exact header layout, reassembly from any split of the stream, and every way a
// header can be wrong rejected before a body buffer exists.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include "core/rng.h"
#include "net/rpc/frame.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using core::ErrorCode;

core::Message sample_info() {
  core::InfoReply info;
  info.request_id = 42;
  info.model_id = "0123456789abcdef";
  info.span = {2, 5};
  info.hidden_size = 64;
  info.version = "bouquet 0.1";
  return info;
}

std::vector<uint8_t> header_with_length(uint64_t length) {
  auto header = frame_header(length);
  return header;
}

TEST(Frame, HeaderIsMagicVersionFlagsAndLittleEndianLength) {
  const auto header = frame_header(0x0102030405060708ull);
  ASSERT_EQ(header.size(), kFrameHeaderBytes);
  EXPECT_EQ(header, (std::vector<uint8_t>{'B', 'Q', 1, 0, 8, 7, 6, 5, 4, 3, 2, 1}));
}

TEST(Frame, BodyIsTheCoreEncodingAndItsLengthIsEncodedSize) {
  const core::Message m = sample_info();
  const auto frame = encode_frame(m);
  const auto body = core::encode(m);
  ASSERT_EQ(frame.size(), kFrameHeaderBytes + body.size());
  EXPECT_EQ(std::vector<uint8_t>(frame.begin() + kFrameHeaderBytes, frame.end()), body);
  EXPECT_EQ(frame_header(core::encoded_size(m)), std::vector<uint8_t>(frame.begin(), frame.begin() + 12));
}

TEST(Frame, ParserReassemblesFramesFromAnySplitOfTheStream) {
  const uint64_t seed = testing::test_seed(11);
  core::Rng rng(seed);
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> bodies;
  for (int i = 0; i < 20; ++i) {
    core::InfoRequest request{static_cast<uint64_t>(i)};
    const core::Message m = i % 2 ? core::Message(request) : sample_info();
    bodies.push_back(core::encode(m));
    const auto frame = encode_frame(m);
    stream.insert(stream.end(), frame.begin(), frame.end());
  }
  for (int trial = 0; trial < 50; ++trial) {
    FrameParser parser;
    std::vector<std::vector<uint8_t>> got;
    size_t at = 0;
    while (at < stream.size()) {
      const size_t n = std::min<size_t>(stream.size() - at, 1 + rng.below(40));
      parser.feed(std::span<const uint8_t>(stream.data() + at, n));
      at += n;
      while (auto body = parser.next()) got.push_back(std::move(*body));
    }
    ASSERT_FALSE(parser.failed());
    EXPECT_FALSE(parser.inside_frame());
    ASSERT_EQ(got, bodies) << "trial " << trial;
  }
}

TEST(Frame, HugeLengthPrefixIsRefusedBeforeAllocating) {
  FrameParser parser;
  parser.feed(header_with_length(uint64_t{1} << 63));
  ASSERT_TRUE(parser.failed());
  EXPECT_EQ(parser.error().code, ErrorCode::protocol);
  EXPECT_NE(parser.error().message.find("9223372036854775808"), std::string::npos) << parser.error().message;
  EXPECT_NE(parser.error().message.find("limit"), std::string::npos);
}

TEST(Frame, LengthJustOverTheLimitIsRefusedAndAtTheLimitAccepted) {
  FrameParser over(1000);
  over.feed(header_with_length(1001));
  EXPECT_TRUE(over.failed());
  FrameParser at_limit(1000);
  at_limit.feed(header_with_length(1000));
  EXPECT_FALSE(at_limit.failed());
  EXPECT_TRUE(at_limit.inside_frame());
  EXPECT_EQ(at_limit.progress(), "0 of 1000 body bytes");
}

// A 12-byte header claiming the largest body used to allocate and zero all of it at once, so a
// few stalled connections cost gigabytes. Now the buffer holds about what arrived.
TEST(Frame, ClaimedBodyLengthIsNotAllocatedUpFront) {
  FrameParser parser;  // the default limit, 64 MiB
  parser.feed(header_with_length(kDefaultMaxFrameBytes));
  ASSERT_FALSE(parser.failed());
  EXPECT_TRUE(parser.inside_frame());
  EXPECT_LT(parser.buffered_bytes(), size_t{1} << 20);
  parser.feed(std::vector<uint8_t>(300'000, 7));
  EXPECT_EQ(parser.progress(), fmt::format("300000 of {} body bytes", kDefaultMaxFrameBytes));
  EXPECT_LE(parser.buffered_bytes(), size_t{2 * 300'000});
}

TEST(Frame, GrowingBodyKeepsEveryByteAcrossChunks) {
  std::vector<uint8_t> body(1'000'003);
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>(i * 131 + 7);
  FrameParser parser(body.size());
  parser.feed(header_with_length(body.size()));
  for (size_t at = 0; at < body.size(); at += 4099) {
    const size_t n = std::min<size_t>(4099, body.size() - at);
    parser.feed(std::span<const uint8_t>(body.data() + at, n));
  }
  auto got = parser.next();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == body);
  EXPECT_FALSE(parser.inside_frame());
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(Frame, BadMagicVersionFlagsAndTinyBodiesAreNamed) {
  struct Case {
    std::vector<uint8_t> header;
    std::string expected;
  };
  auto with = [](size_t index, uint8_t value) {
    auto h = frame_header(10);
    h[index] = value;
    return h;
  };
  const std::vector<Case> cases = {
      {with(0, 'G'), "bad magic"},
      {with(2, 7), "version 7"},
      {with(3, 1), "flags"},
      {frame_header(2), "shorter than a message header"},
  };
  for (const auto& c : cases) {
    FrameParser parser;
    parser.feed(c.header);
    ASSERT_TRUE(parser.failed()) << c.expected;
    EXPECT_NE(parser.error().message.find(c.expected), std::string::npos) << parser.error().message;
  }
}

TEST(Frame, HalfFrameIsReportedAsInsideAFrame) {
  const auto frame = encode_frame(sample_info());
  FrameParser parser;
  parser.feed(std::span<const uint8_t>(frame.data(), 5));
  EXPECT_TRUE(parser.inside_frame());
  EXPECT_EQ(parser.progress(), "5 of 12 header bytes");
  parser.feed(std::span<const uint8_t>(frame.data() + 5, 10));
  EXPECT_TRUE(parser.inside_frame());
  EXPECT_EQ(parser.progress(), fmt::format("3 of {} body bytes", frame.size() - 12));
  EXPECT_FALSE(parser.next().has_value());
}

TEST(Frame, RandomGarbageNeverCrashesAndEndsFailedOrWaiting) {
  const uint64_t seed = testing::test_seed(5);
  core::Rng rng(seed);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> garbage(1 + rng.below(64));
    for (auto& b : garbage) b = static_cast<uint8_t>(rng.below(256));
    if (trial % 2) {  // half the time behind a valid header, so the body decoder sees garbage
      auto h = frame_header(garbage.size());
      garbage.insert(garbage.begin(), h.begin(), h.end());
    }
    FrameParser parser(1 << 20);
    parser.feed(garbage);
    while (auto body = parser.next()) {
      auto decoded = decode_body(*body, FrameLimits{});
      if (!decoded.ok()) {
        EXPECT_EQ(decoded.error().code, ErrorCode::protocol);
      }
    }
  }
}

TEST(Frame, UndecodableBodyBecomesAProtocolErrorNamingTheField) {
  auto body = core::encode(sample_info());
  body.resize(body.size() - 3);
  const auto decoded = decode_body(body, FrameLimits{});
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code, ErrorCode::protocol);
  EXPECT_NE(decoded.error().message.find("info."), std::string::npos) << decoded.error().message;
}

TEST(Frame, MaxStepTokensKeepsAStepUnderTheFrameLimit) {
  FrameLimits limits;
  limits.max_frame_bytes = 1 << 20;  // 1 MiB
  const uint32_t tokens = max_step_tokens(limits, 1, 4096);
  EXPECT_EQ(tokens, (limits.max_frame_bytes - 4096) / (4096 * 4));
  core::StepRequest step;
  step.hidden_states = core::make_activation({1, tokens, 4096}, std::vector<float>(uint64_t{tokens} * 4096));
  EXPECT_LE(step.encoded_size(), limits.max_frame_bytes);
  // The element limit binds too: a step never carries more than WireLimits allows.
  limits.max_frame_bytes = uint64_t{1} << 40;
  EXPECT_EQ(max_step_tokens(limits, 2, 4096), limits.wire.max_tensor_elements / (2 * 4096));
}

}  // namespace
}  // namespace bouquet::net

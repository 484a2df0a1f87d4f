#include "core/wire.h"

#include <gtest/gtest.h>
#include <set>

#include "core/rng.h"
#include "tests/core/support/random_messages.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

// Hand-built bytes, to state the wire format independently of the encoder.
struct Bytes {
  std::vector<uint8_t> v;
  Bytes& u8(uint64_t x) { return put(x, 1); }
  Bytes& u16(uint64_t x) { return put(x, 2); }
  Bytes& u32(uint64_t x) { return put(x, 4); }
  Bytes& u64(uint64_t x) { return put(x, 8); }
  Bytes& str(std::string_view s) {
    u32(s.size());
    v.insert(v.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& put(uint64_t x, int n) {
    for (int i = 0; i < n; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
    return *this;
  }
  // Messages without the identity challenge's fields are written at version 2.
  Bytes& header(MessageType type, uint16_t version = 2) { return u16(version).u8(static_cast<uint8_t>(type)); }
};

DecodeErrorCode decode_error(const std::vector<uint8_t>& bytes) {
  auto result = decode(bytes);
  EXPECT_FALSE(result.ok());
  if (result.ok()) return DecodeErrorCode{};
  EXPECT_FALSE(result.error().message.empty());
  return result.error().code;
}

TEST(Wire, EncodedSizeEqualsTheRealBytesForEveryMessageAndCompression) {
  const uint64_t seed = test::test_seed(21);
  Rng rng(seed);
  std::set<MessageType> seen;
  for (int round = 0; round < 40; ++round) {
    for (auto compression : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
      for (const Message& m : test::random_messages(rng, compression)) {
        const auto bytes = encode(m);
        SCOPED_TRACE(std::string(to_string(message_type(m))));
        ASSERT_EQ(bytes.size(), encoded_size(m));
        ASSERT_EQ(bytes.size(), std::visit([](const auto& x) { return x.encoded_size(); }, m));
        seen.insert(message_type(m));
      }
    }
  }
  EXPECT_EQ(seen.size(), std::variant_size_v<Message>);
}

TEST(Wire, ActivationPayloadIsChargedAtItsCompressedSize) {
  for (auto compression : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    const uint64_t n = 2 * 3 * 4096;
    StepRequest step{7,  8, 9, make_activation({2, 3, 4096}, std::vector<float>(n, 0.5f), DType::float32, compression),
                     {}, {}};
    const uint64_t fixed = 3 + 8 + 8 + 4 + (3 + 3 * 4) + 1 + 4;
    const uint64_t payload = compression == Compression::none      ? 4 * n
                             : compression == Compression::float16 ? 2 * n
                                                                   : n + 2 * (n / 64);
    EXPECT_EQ(step.encoded_size(), fixed + payload) << to_string(compression);
    EXPECT_EQ(encode(step).size(), fixed + payload);
    // The simulator's handles carry no data but cost the same.
    step.hidden_states.data = nullptr;
    EXPECT_EQ(step.encoded_size(), fixed + payload);
  }
}

TEST(Wire, LayoutIsPinned) {
  // Changing these bytes changes the wire format: bump kWireVersion instead.
  EXPECT_EQ(encode(CloseSession{0x0102030405060708}),
            Bytes{}.header(MessageType::close_session).u64(0x0102030405060708).v);
  StepResult result{
      1,
      2,
      3,
      make_activation({1, 1, 2}, {1.0f, -2.0f}),
  };
  EXPECT_EQ(encode(result), Bytes{}
                                .header(MessageType::step_result)
                                .u64(1)
                                .u64(2)
                                .u32(3)
                                .u8(0)
                                .u8(0)
                                .u8(3)
                                .u32(1)
                                .u32(1)
                                .u32(2)  // f32, none, [1, 1, 2]
                                .u32(0x3f800000)
                                .u32(0xc0000000)
                                .v);
  ErrorReply error{5, 6, Error{ErrorCode::cache_full, "full"}};
  EXPECT_EQ(encode(error), Bytes{}.header(MessageType::error).u64(5).u64(6).u16(5).str("full").v);
}

TEST(Wire, DecodingRoundTripsEveryMessage) {
  const uint64_t seed = test::test_seed(22);
  Rng rng(seed);
  for (int round = 0; round < 40; ++round) {
    for (const Message& m : test::random_messages(rng)) {
      const auto bytes = encode(m);
      auto decoded = decode(bytes);
      ASSERT_TRUE(decoded.ok()) << decoded.error().message;
      ASSERT_EQ(message_type(decoded.value()), message_type(m));
      // Canonical: re-encoding what was decoded gives the same bytes (activations re-pack their
      // wire bytes unchanged).
      ASSERT_EQ(encode(decoded.value()), bytes) << to_string(message_type(m));
    }
  }
}

TEST(Wire, AdapterNamesTravelInOpenForwardBackwardAndInfo) {
  // Each name costs its length plus a 4-byte length prefix, and arrives as sent.
  OpenSession open{1, "m", BlockSpan{0, 2}, 16, 1, Compression::none, 5, "", std::nullopt};
  const uint64_t base = open.encoded_size();
  open.adapter = "chat-lora";
  EXPECT_EQ(open.encoded_size(), base + 9);
  auto decoded = decode(encode(open));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<OpenSession>(decoded.value()).adapter, "chat-lora");

  const Activation x = make_activation({1, 1, 2}, {1.0f, 2.0f});
  ForwardRequest forward{2, "m", BlockSpan{0, 2}, "code", Compression::none, x, std::nullopt, std::nullopt};
  decoded = decode(encode(forward));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<ForwardRequest>(decoded.value()).adapter, "code");
  BackwardRequest backward{3, "m", BlockSpan{0, 2}, "code", Compression::none, x, x, std::nullopt, std::nullopt};
  decoded = decode(encode(backward));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<BackwardRequest>(decoded.value()).adapter, "code");
  EXPECT_EQ(backward.encoded_size(), encode(backward).size());

  InfoReply info;
  info.adapters = {"chat-lora", "code"};
  decoded = decode(encode(info));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<InfoReply>(decoded.value()).adapters, info.adapters);
}

TEST(Wire, DecodedActivationsCarryTheirValues) {
  std::vector<float> values{0.25f, -1.5f, 3.0f, 1e-3f, 7.0f, -8.0f};
  StepRequest step{11, 12, 13, make_activation({1, 2, 3}, values), std::nullopt, {}};
  step.next_servers.push_back(NextServer{PeerId{42}, 77, BlockSpan{4, 9}});
  auto decoded = decode(encode(step));
  ASSERT_TRUE(decoded.ok());
  const auto& back = std::get<StepRequest>(decoded.value());
  EXPECT_EQ(back.session_id, 11u);
  EXPECT_EQ(back.step_id, 12u);
  EXPECT_EQ(back.start_position, 13u);
  EXPECT_EQ(back.hidden_states.shape, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(back.hidden_states.to_floats(), values);
  EXPECT_FALSE(back.prompts.has_value());
  ASSERT_EQ(back.next_servers.size(), 1u);
  EXPECT_EQ(back.next_servers[0].peer, PeerId{42});
  EXPECT_EQ(back.next_servers[0].span, (BlockSpan{4, 9}));
}

TEST(Wire, EveryTruncationIsRejectedAsTruncated) {
  const uint64_t seed = test::test_seed(23);
  Rng rng(seed);
  for (const Message& m : test::random_messages(rng)) {
    const auto bytes = encode(m);
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + cut);
      ASSERT_EQ(decode_error(prefix), DecodeErrorCode::truncated) << to_string(message_type(m)) << " cut at " << cut;
    }
    auto longer = bytes;
    longer.push_back(0);
    EXPECT_EQ(decode_error(longer), DecodeErrorCode::trailing_bytes);
  }
}

TEST(Wire, TheIdentityChallengeIsVersionThreeAndEverythingElseStaysVersionTwo) {
  // Without a nonce an open is byte for byte what a version-2 peer sends and reads.
  OpenSession open{7, "m", BlockSpan{0, 2}, 16, 1, Compression::none, 5, "", std::nullopt};
  const auto plain = encode(open);
  EXPECT_EQ(wire_version_of(open), 2);
  EXPECT_EQ(plain[0], 2);
  EXPECT_EQ(plain[1], 0);
  open.identity_nonce = std::string(32, 'n');
  const auto challenged = encode(open);
  EXPECT_EQ(wire_version_of(open), 3);
  // The same bytes after a version-3 header, then the nonce.
  auto expected = Bytes{}.header(MessageType::open_session, 3);
  expected.v.insert(expected.v.end(), plain.begin() + 3, plain.end());
  EXPECT_EQ(challenged, expected.str(std::string(32, 'n')).v);
  EXPECT_EQ(open.encoded_size(), plain.size() + 4 + 32);
  auto decoded = decode(challenged);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(std::get<OpenSession>(decoded.value()).identity_nonce, std::string(32, 'n'));
  EXPECT_FALSE(std::get<OpenSession>(decode(plain).value()).identity_nonce.has_value());

  // The answer: key then signature, after the session id.
  const SessionOpened opened{7, IdentityProof{std::string(32, 'k'), std::string(64, 's')}};
  EXPECT_EQ(
      encode(opened),
      Bytes{}.header(MessageType::session_opened, 3).u64(7).str(std::string(32, 'k')).str(std::string(64, 's')).v);
  EXPECT_EQ(encode(SessionOpened{7, std::nullopt}), Bytes{}.header(MessageType::session_opened).u64(7).v);

  // One message, one encoding: version 3 for a message without its fields, or version 3 fields
  // missing from a version-3 message, is refused.
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::close_session, 3).u64(1).v), DecodeErrorCode::bad_value);
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::session_opened, 3).u64(1).v), DecodeErrorCode::truncated);
  // A version-2 reader (an old server) refuses a challenged open as a version it does not speak:
  // its ErrorReply (id 0, protocol) is what a new client takes for "cannot prove its identity".
  EXPECT_EQ(challenged[0], 3);
}

TEST(Wire, AnInfoExchangeWithTheIdentityChallengeIsVersionFourAndWithoutItStaysVersionTwo) {
  InfoRequest request{9};
  EXPECT_EQ(encode(request), Bytes{}.header(MessageType::info_request).u64(9).v);
  request.identity_nonce = std::string(32, 'n');
  EXPECT_EQ(wire_version_of(request), 4);
  EXPECT_EQ(encode(request), Bytes{}.header(MessageType::info_request, 4).u64(9).str(std::string(32, 'n')).v);
  auto decoded = decode(encode(request));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(std::get<InfoRequest>(decoded.value()).identity_nonce, std::string(32, 'n'));

  InfoReply reply;
  reply.request_id = 9;
  reply.model_id = "m";
  const auto plain = encode(reply);
  EXPECT_EQ(plain[0], 2);
  reply.identity_proof = IdentityProof{std::string(32, 'k'), std::string(64, 's')};
  EXPECT_EQ(wire_version_of(reply), 4);
  // The same fields after a version-4 header, then key and signature.
  auto expected = Bytes{}.header(MessageType::info, 4);
  expected.v.insert(expected.v.end(), plain.begin() + 3, plain.end());
  EXPECT_EQ(encode(reply), expected.str(std::string(32, 'k')).str(std::string(64, 's')).v);
  EXPECT_EQ(reply.encoded_size(), plain.size() + 4 + 32 + 4 + 64);
  decoded = decode(encode(reply));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(std::get<InfoReply>(decoded.value()).identity_proof->signature, std::string(64, 's'));

  // The session challenge stays version 3. Were the nonce written at version 3, a version-3 peer
  // would find trailing bytes; at version 4 it refuses the request by name (bad_version, answered
  // as an ErrorReply) rather than misreading it.
  EXPECT_EQ(wire_version_of(OpenSession{1, "m", {0, 1}, 1, 1, Compression::none, 0, "", std::string(32, 'n')}), 3);
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::info_request, 3).u64(9).str(std::string(32, 'n')).v),
            DecodeErrorCode::trailing_bytes);
  EXPECT_EQ(kWireVersion, 4);
}

TEST(Wire, HeaderErrorsAreTyped) {
  EXPECT_EQ(decode_error(Bytes{}.u16(kWireVersion + 1).u8(5).u64(1).v), DecodeErrorCode::bad_version);
  EXPECT_EQ(decode_error(Bytes{}.u16(kWireVersionMin - 1).u8(5).u64(1).v), DecodeErrorCode::bad_version);
  EXPECT_EQ(decode_error(Bytes{}.u16(kWireVersion).u8(0).u64(1).v), DecodeErrorCode::unknown_message);
  EXPECT_EQ(decode_error(Bytes{}.u16(kWireVersion).u8(13).u64(1).v), DecodeErrorCode::unknown_message);
  EXPECT_EQ(decode_error(Bytes{}.u16(kWireVersion).u8(255).v), DecodeErrorCode::unknown_message);
}

TEST(Wire, OversizedCountsAreRejectedBeforeAllocating) {
  // A string claiming 4 GiB.
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::open_session).u64(1).u32(0xffffffff).v),
            DecodeErrorCode::over_limit);
  // A string within the limit but longer than the bytes present.
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::open_session).u64(1).u32(100).v), DecodeErrorCode::truncated);
  // A list of 4 billion adapters.
  auto info = Bytes{}.header(MessageType::info).u64(1).str("m").u32(0).u32(4).u32(64).str("v").u64(10).u64(5);
  EXPECT_EQ(decode_error(Bytes(info).u32(0xffffffff).v), DecodeErrorCode::over_limit);
  EXPECT_EQ(decode_error(Bytes(info).u32(1000).v), DecodeErrorCode::truncated);
  // A tensor of 2^48 elements, and one of rank 9.
  auto step = Bytes{}.header(MessageType::step).u64(1).u64(1).u32(0);
  EXPECT_EQ(decode_error(Bytes(step).u8(0).u8(0).u8(3).u32(65536).u32(65536).u32(65536).v),
            DecodeErrorCode::over_limit);
  EXPECT_EQ(decode_error(Bytes(step).u8(0).u8(0).u8(9).v), DecodeErrorCode::over_limit);
  EXPECT_EQ(decode_error(Bytes(step).u8(0).u8(0).u8(0).v), DecodeErrorCode::over_limit);
  // Within the element limit but with no payload behind it.
  EXPECT_EQ(decode_error(Bytes(step).u8(0).u8(0).u8(3).u32(1).u32(1024).u32(4096).v), DecodeErrorCode::truncated);
  // Tighter limits are honoured.
  WireLimits tight;
  tight.max_tensor_elements = 4;
  auto small = decode(Bytes(step).u8(0).u8(0).u8(3).u32(1).u32(1).u32(8).v, tight);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().code, DecodeErrorCode::over_limit);
  EXPECT_NE(small.error().message.find("step.hidden_states"), std::string::npos) << small.error().message;
}

TEST(Wire, OutOfRangeValuesAreRejected) {
  auto step = Bytes{}.header(MessageType::step).u64(1).u64(1).u32(0);
  EXPECT_EQ(decode_error(Bytes(step).u8(3).v), DecodeErrorCode::bad_value);        // dtype
  EXPECT_EQ(decode_error(Bytes(step).u8(0).u8(9).v), DecodeErrorCode::bad_value);  // compression
  auto with_tensor = Bytes(step).u8(0).u8(0).u8(1).u32(1).u32(0);
  EXPECT_EQ(decode_error(Bytes(with_tensor).u8(2).v), DecodeErrorCode::bad_value);  // presence flag
  EXPECT_EQ(decode_error(Bytes{}.header(MessageType::error).u64(1).u64(0).u16(999).str("x").v),
            DecodeErrorCode::bad_value);
  auto error = decode(Bytes{}.header(MessageType::error).u64(1).u64(0).u16(0).str("x").v);
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.error().to_error().code, ErrorCode::protocol);
}

// Mutated and random bytes: the decoder either returns a message that re-encodes to exactly its
// claimed size, or a typed error. It never crashes, hangs or allocates wildly.
TEST(Wire, FuzzedInputGivesAMessageOrATypedError) {
  const uint64_t seed = test::test_seed(24);
  Rng rng(seed);
  int decoded_ok = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bytes;
    if (rng.bernoulli(0.1)) {
      bytes.resize(rng.below(64));
      for (auto& b : bytes) b = static_cast<uint8_t>(rng.below(256));
    } else {
      auto messages = test::random_messages(rng);
      bytes = encode(messages[rng.below(messages.size())]);
      for (uint64_t k = 1 + rng.below(4); k > 0; --k) {
        const size_t at = rng.below(bytes.size());
        switch (rng.below(3)) {
          case 0:
            bytes[at] = static_cast<uint8_t>(rng.below(256));
            break;
          case 1:
            bytes.erase(bytes.begin() + static_cast<long>(at));
            break;
          default:
            bytes.insert(bytes.begin() + static_cast<long>(at), static_cast<uint8_t>(rng.below(256)));
        }
        if (bytes.empty()) break;
      }
    }
    auto result = decode(bytes);
    if (result.ok()) {
      ++decoded_ok;
      ASSERT_EQ(encode(result.value()).size(), bytes.size()) << "iteration " << i;
    } else {
      ++rejected;
      ASSERT_FALSE(result.error().message.empty()) << "iteration " << i;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(decoded_ok, 100);  // mutations of payload bytes still decode
}

}  // namespace
}  // namespace bouquet::core

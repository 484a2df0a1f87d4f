// The tensor bridge: tensors pack exactly as the core's codecs pack host floats, come back with
// their shape, and a message carrying them encodes to exactly encoded_size() bytes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"
#include "core/wire.h"
#include "gpu/tensor_bridge.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

using core::Compression;

at::Tensor random_tensor(core::Rng& rng, std::vector<int64_t> shape, float scale = 3.0f) {
  at::Tensor t = at::empty(shape, at::kFloat);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal()) * scale;
  return t;
}

const Compression kAll[] = {Compression::none, Compression::float16, Compression::int8_blockwise};

TEST(TensorBridge, PacksExactlyLikeTheCoreCodec) {
  core::Rng rng(testing::test_seed(3));
  const at::Tensor t = random_tensor(rng, {2, 5, 70});
  std::vector<float> values(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  for (Compression c : kAll) {
    const core::Activation a = activation_from_tensor(t, c);
    EXPECT_EQ(a.shape, (std::vector<uint32_t>{2, 5, 70}));
    EXPECT_EQ(a.compression, c);
    std::vector<uint8_t> from_tensor, from_floats;
    a.data->pack(c, a.dtype, a.element_count(), from_tensor);
    core::pack_values(values, c, core::DType::float32, from_floats);
    EXPECT_EQ(from_tensor, from_floats) << core::to_string(c);
    EXPECT_EQ(from_tensor.size(), a.wire_bytes());
  }
}

TEST(TensorBridge, NonContiguousAndOtherDtypesAreConvertedOnce) {
  core::Rng rng(testing::test_seed(4));
  const at::Tensor t = random_tensor(rng, {3, 4, 8});
  const at::Tensor transposed = t.transpose(0, 1);  // [4, 3, 8], not contiguous
  const at::Tensor back = tensor_from_activation(activation_from_tensor(transposed));
  EXPECT_TRUE(at::equal(back, transposed.contiguous()));
  const at::Tensor doubles = t.to(at::kDouble);
  EXPECT_TRUE(at::equal(tensor_from_activation(activation_from_tensor(doubles)), t));
}

TEST(TensorBridge, ReceivedBytesComeBackAsTensorsWithinTheCodecBound) {
  core::Rng rng(testing::test_seed(5));
  const at::Tensor t = random_tensor(rng, {1, 7, 128});
  EXPECT_TRUE(at::equal(round_trip(t, Compression::none), t));
  // float16: round to nearest, relative error at most 2^-11 for normal values.
  const at::Tensor f16 = round_trip(t, Compression::float16);
  EXPECT_LE(((f16 - t).abs() / t.abs().clamp_min(1e-3)).max().item<float>(), std::ldexp(1.0f, -11));
  // int8 blockwise: error at most half a step of absmax/127 per 64-value block (the scale itself
  // rounded to float16 adds at most 2^-11 of absmax).
  const at::Tensor i8 = round_trip(t, Compression::int8_blockwise);
  const at::Tensor flat = t.reshape({-1, 64});
  const at::Tensor bound = flat.abs().amax(1, true) * (0.5f / 127.0f + std::ldexp(1.0f, -11));
  EXPECT_TRUE(((i8.reshape({-1, 64}) - flat).abs() <= bound).all().item<bool>());
  EXPECT_EQ(i8.sizes(), t.sizes());
}

TEST(TensorBridge, EncodedSizeEqualsTheRealBytesOfMessagesWithTensors) {
  core::Rng rng(testing::test_seed(6));
  for (Compression c : kAll) {
    for (int64_t tokens : {1, 3, 65, 200}) {
      const at::Tensor h = random_tensor(rng, {1, tokens, 96});
      core::StepRequest step{9, 2, 5, activation_from_tensor(h, c), std::nullopt, {}};
      core::BackwardRequest backward;
      backward.model_id = "m";
      backward.span = {0, 2};
      backward.hidden_states = activation_from_tensor(h, c);
      backward.grad_outputs = activation_from_tensor(h * 2, c);
      for (const core::Message& m : {core::Message(step), core::Message(backward)}) {
        const auto frame = encode_frame(m);
        EXPECT_EQ(frame.size() - kFrameHeaderBytes, core::encoded_size(m))
            << core::to_string(c) << " tokens " << tokens;
        // And the decoded copy (wire bytes, not a tensor) reports the same size.
        auto decoded = core::decode(std::span<const uint8_t>(frame).subspan(kFrameHeaderBytes));
        ASSERT_TRUE(decoded.ok());
        EXPECT_EQ(core::encoded_size(decoded.value()), core::encoded_size(m));
      }
    }
  }
}

}  // namespace
}  // namespace bouquet::net

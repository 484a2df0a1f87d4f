#include "core/compression.h"

#include <gtest/gtest.h>
#include <bit>
#include <cmath>
#include <limits>

#include "core/rng.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

TEST(Compression, PackedSizesFollowTheWireFormulas) {
  for (uint64_t n : {1ull, 63ull, 64ull, 65ull, 4096ull * 7}) {
    EXPECT_EQ(packed_size(Compression::none, DType::float32, n), 4 * n);
    EXPECT_EQ(packed_size(Compression::none, DType::bfloat16, n), 2 * n);
    EXPECT_EQ(packed_size(Compression::float16, DType::float32, n), 2 * n);
    EXPECT_EQ(packed_size(Compression::int8_blockwise, DType::float32, n), n + 2 * ((n + 63) / 64));
  }
}

TEST(Compression, HalfConversionMatchesKnownValues) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);               // rounds down to the largest half
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);               // rounds up to infinity
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // exactly half of it: ties to even
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, even stays
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, odd rounds up
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(half_to_float(0x7c00), std::numeric_limits<float>::infinity());
}

TEST(Compression, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float f = half_to_float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << "half bits " << bits;
  }
}

TEST(Compression, HalfRoundsToTheNearestRepresentable) {
  const uint64_t seed = test::test_seed(11);
  Rng rng(seed);
  for (int i = 0; i < 200000; ++i) {
    const float x =
        static_cast<float>(rng.uniform(-70000.0, 70000.0) * std::ldexp(1.0, -static_cast<int>(rng.below(30))));
    const uint16_t h = float_to_half(x);
    const float y = half_to_float(h);
    if (std::isinf(y)) {
      ASSERT_GE(std::fabs(x), 65520.0f) << x;
      continue;
    }
    // No neighbour of h is strictly closer to x.
    for (int delta : {-1, 1}) {
      const uint16_t n = static_cast<uint16_t>(h + delta);
      if ((n & 0x7c00) == 0x7c00 || ((n ^ h) & 0x8000)) continue;
      ASSERT_LE(std::fabs(y - x), std::fabs(half_to_float(n) - x)) << x;
    }
  }
}

TEST(Compression, BfloatKeepsTheTopSixteenBitsRounded) {
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3f80);
  EXPECT_EQ(bfloat16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bfloat16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie to even
  EXPECT_EQ(float_to_bfloat16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie to even (up)
  EXPECT_EQ(float_to_bfloat16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Compression, NoneIsLosslessForFloat32AndEveryCodecWritesItsSize) {
  const uint64_t seed = test::test_seed(12);
  Rng rng(seed);
  for (int round = 0; round < 50; ++round) {
    std::vector<float> values(1 + rng.below(500));
    for (float& v : values) v = static_cast<float>(rng.normal() * 100);
    for (auto c : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
      for (auto d : {DType::float32, DType::float16, DType::bfloat16}) {
        std::vector<uint8_t> bytes{0xAB};  // packing appends
        pack_values(values, c, d, bytes);
        ASSERT_EQ(bytes.size() - 1, packed_size(c, d, values.size()));
        auto back = unpack_values(std::span(bytes).subspan(1), c, d, values.size());
        ASSERT_EQ(back.size(), values.size());
        if (c == Compression::none && d == DType::float32) {
          ASSERT_EQ(back, values);
        }
      }
    }
  }
}

TEST(Compression, Int8ErrorStaysWithinHalfAStepOfEachBlockScale) {
  const uint64_t seed = test::test_seed(13);
  Rng rng(seed);
  for (int round = 0; round < 200; ++round) {
    const double magnitude = std::ldexp(1.0, static_cast<int>(rng.below(20)) - 10);
    std::vector<float> values(1 + rng.below(1000));
    for (float& v : values) v = static_cast<float>(rng.normal() * magnitude);
    std::vector<uint8_t> bytes;
    pack_values(values, Compression::int8_blockwise, DType::float32, bytes);
    auto back = unpack_values(bytes, Compression::int8_blockwise, DType::float32, values.size());
    for (size_t block = 0; block * 64 < values.size(); ++block) {
      float absmax = 0;
      const size_t end = std::min(values.size(), block * 64 + 64);
      for (size_t i = block * 64; i < end; ++i) absmax = std::max(absmax, std::fabs(values[i]));
      // Half a quantization step, plus the float16 rounding of the scale.
      const float bound = 0.5f * absmax / 127.0f * (1.0f + 1.0f / 512);
      for (size_t i = block * 64; i < end; ++i) {
        ASSERT_LE(std::fabs(back[i] - values[i]), bound) << "value " << i << " round " << round;
      }
    }
  }
}

TEST(Compression, Int8HandlesZerosInfinitiesAndNaN) {
  std::vector<float> values(70, 0.0f);
  values[1] = std::numeric_limits<float>::quiet_NaN();
  values[65] = 2.0f;
  values[66] = -std::numeric_limits<float>::infinity();
  std::vector<uint8_t> bytes;
  pack_values(values, Compression::int8_blockwise, DType::float32, bytes);
  auto back = unpack_values(bytes, Compression::int8_blockwise, DType::float32, values.size());
  EXPECT_EQ(back[0], 0.0f);
  EXPECT_EQ(back[1], 0.0f);  // NaN packs as 0
  EXPECT_EQ(back[64], 0.0f);
  // Infinities do not enter the scale; they saturate to the block's largest finite magnitude.
  EXPECT_NEAR(back[65], 2.0f, 0.01f);
  EXPECT_NEAR(back[66], -2.0f, 0.01f);
  for (float v : back) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace bouquet::core

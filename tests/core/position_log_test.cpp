// Histories by absolute position, and cutting/joining hidden states along the positions axis:
// a replay merged or split this way must hand servers exactly the values they saw first.
#include "core/position_log.h"

#include <gtest/gtest.h>

#include "core/positions.h"
#include "core/rng.h"
#include "core/wire.h"
#include "tests/core/support/seed.h"

namespace bouquet::core {
namespace {

using test::test_seed;

constexpr uint32_t kHidden = 64;

// Position p of row r holds values that name them: r * 1000 + p, then hidden index / 128.
Activation positions(uint32_t batch, uint32_t begin, uint32_t end, Compression c = Compression::none) {
  std::vector<float> v;
  for (uint32_t r = 0; r < batch; ++r) {
    for (uint32_t p = begin; p < end; ++p) {
      for (uint32_t j = 0; j < kHidden; ++j) v.push_back(r * 1000.0f + p + j / 128.0f);
    }
  }
  return make_activation({batch, end - begin, kHidden}, std::move(v), DType::float32, c);
}

// The values a server decodes from `a` on the wire.
std::vector<float> on_the_wire(const Activation& a) {
  auto decoded = decode(encode(StepResult{1, 1, 0, a}));
  return std::get<StepResult>(decoded.value()).hidden_states.to_floats();
}

TEST(Positions, SliceAndConcatKeepRowsApartAndReturnWholeHandlesUntouched) {
  const Activation a = positions(2, 10, 15);
  const Activation middle = slice_tokens(a, 1, 3);
  EXPECT_EQ(middle.shape, (std::vector<uint32_t>{2, 2, kHidden}));
  EXPECT_EQ(middle.to_floats(), positions(2, 11, 13).to_floats());
  EXPECT_EQ(slice_tokens(a, 0, 5).data, a.data) << "a slice of everything is the handle itself";
  const Activation parts[] = {positions(2, 0, 3), positions(2, 3, 4), positions(2, 4, 9)};
  EXPECT_EQ(concat_tokens(parts).to_floats(), positions(2, 0, 9).to_floats());
  EXPECT_EQ(concat_tokens(std::span(parts, 1)).data, parts[0].data);
  // Simulated handles: shapes only.
  const Activation sized[] = {make_sized_activation({1, 3, 8}, DType::float16, Compression::int8_blockwise),
                              make_sized_activation({1, 4, 8}, DType::float16, Compression::int8_blockwise)};
  const Activation joined = concat_tokens(sized);
  EXPECT_EQ(joined.shape, (std::vector<uint32_t>{1, 7, 8}));
  EXPECT_EQ(joined.data, nullptr);
  EXPECT_EQ(joined.compression, Compression::int8_blockwise);
  EXPECT_EQ(slice_tokens(joined, 2, 5).shape, (std::vector<uint32_t>{1, 3, 8}));
}

TEST(Positions, MergedOrSlicedValuesAreExactlyWhatTheReceiverDecodedFirst) {
  const uint64_t seed = test_seed(101);
  Rng rng(seed);
  for (Compression c : {Compression::none, Compression::float16, Compression::int8_blockwise}) {
    SCOPED_TRACE(to_string(c));
    std::vector<Activation> parts;
    std::vector<float> first_time;
    for (int i = 0; i < 4; ++i) {
      const uint32_t tokens = 1 + static_cast<uint32_t>(rng.below(5));
      std::vector<float> v(tokens * kHidden);
      for (float& x : v) x = static_cast<float>(rng.normal());
      parts.push_back(make_activation({1, tokens, kHidden}, v, DType::float32, c));
      const auto seen = on_the_wire(parts.back());
      first_time.insert(first_time.end(), seen.begin(), seen.end());
    }
    const Activation merged = concat_tokens(parts);
    EXPECT_EQ(on_the_wire(merged), first_time) << "a merged replay changes no value";
    const uint32_t total = token_count(merged);
    const Activation tail = slice_tokens(merged, 1, total);
    EXPECT_EQ(on_the_wire(tail), std::vector<float>(first_time.begin() + kHidden, first_time.end()));
    // Compressed replays stay compressed when that loses nothing (float16 always does).
    if (c == Compression::float16) EXPECT_EQ(merged.compression, c);
  }
}

TEST(PositionLog, PutReplacesWhatItCoversAndTakeMergesAcrossEntries) {
  PositionLog log;
  log.put(0, positions(1, 0, 4));
  log.put(4, positions(1, 4, 5));
  log.put(5, positions(1, 5, 6));
  EXPECT_EQ(log.end(), 6u);
  EXPECT_TRUE(log.covers(0, 6));
  EXPECT_TRUE(log.covers(2, 5));
  EXPECT_FALSE(log.covers(5, 7));
  EXPECT_EQ(log.take(0, 6, 100).to_floats(), positions(1, 0, 6).to_floats());
  EXPECT_EQ(log.take(2, 6, 3).to_floats(), positions(1, 2, 5).to_floats()) << "at most max_tokens";
  // Overwrite [3, 5) with other values: entries straddling its edges are cut.
  log.put(3, positions(1, 103, 105));
  std::vector<uint32_t> keys;
  for (const auto& [k, a] : log.entries()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<uint32_t>{0, 3, 5}));
  EXPECT_EQ(log.take(2, 6, 100).to_floats(),
            concat_tokens(std::vector<Activation>{positions(1, 2, 3), positions(1, 103, 105), positions(1, 5, 6)})
                .to_floats());
  // A put inside one entry splits it in three.
  log.put(1, positions(1, 201, 202));
  EXPECT_EQ(log.take(0, 3, 100).to_floats(),
            concat_tokens(std::vector<Activation>{positions(1, 0, 1), positions(1, 201, 202), positions(1, 2, 3)})
                .to_floats());
}

TEST(PositionLog, TruncateCutsTheStraddlingEntry) {
  PositionLog log;
  log.put(0, positions(2, 0, 10));
  log.put(10, positions(2, 10, 11));
  log.truncate(7);
  EXPECT_EQ(log.end(), 7u);
  EXPECT_EQ(log.entries().size(), 1u);
  EXPECT_EQ(log.take(0, 7, 100).to_floats(), positions(2, 0, 7).to_floats());
  log.truncate(0);
  EXPECT_TRUE(log.empty());
  EXPECT_FALSE(log.covers(0, 1));
}

}  // namespace
}  // namespace bouquet::core

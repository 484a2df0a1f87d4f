// bench-block on a small shape: it measures what it says (the weight bytes of a Llama block of
// that shape) and reports usable numbers. No timing is asserted: this machine's speed varies.
#include "gpu/bench_block.h"
#include "gpu/errors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

TEST(BenchBlock, MeasuresTheBlockItDescribes) {
  BenchBlockConfig config;
  config.hidden = 128;
  config.heads = 4;
  config.kv_heads = 2;
  config.intermediate = 352;
  config.cached_tokens = 16;
  config.steps = 3;
  config.device = "cpu";
  const BenchBlockResult r = bench_block(config);
  const uint64_t h = 128, kv = 2 * 32, i = 352;
  // Two norms, q/k/v, o, gate/up/down, all f32.
  EXPECT_EQ(r.weight_bytes, 4 * (2 * h + h * (h + 2 * kv) + h * h + 3 * h * i));
  EXPECT_GT(r.step_s, 0);
  EXPECT_LE(r.step_min_s, r.step_s);
  EXPECT_GT(r.stream_gbps, 0);
  EXPECT_DOUBLE_EQ(r.ratio, r.step_s / r.stream_s);
  EXPECT_LE(r.stream_min_s, r.stream_s);
  EXPECT_DOUBLE_EQ(r.best_ratio, r.step_min_s / r.stream_min_s);
  const std::string text = format_bench_block(config, r);
  EXPECT_THAT(text, ::testing::HasSubstr("ratio step / weight streaming"));
  EXPECT_THAT(text, ::testing::HasSubstr("GB/s"));
}

// A span of blocks: every block's weights count, and the floor streams them all.
TEST(BenchBlock, ASpanOfBlocksCountsEveryBlocksWeights) {
  BenchBlockConfig config;
  config.hidden = 64;
  config.heads = 4;
  config.intermediate = 128;
  config.cached_tokens = 4;
  config.steps = 2;
  config.device = "cpu";
  const uint64_t one = bench_block(config).weight_bytes;
  config.blocks = 3;
  const BenchBlockResult r = bench_block(config);
  EXPECT_EQ(r.weight_bytes, 3 * one);
  EXPECT_EQ(r.f32_weight_bytes, 3 * one) << "f32 weights: the f32 floor is the same bytes";
  EXPECT_THAT(format_bench_block(config, r), ::testing::HasSubstr("3 blocks: Llama, hidden 64"));
  config.blocks = 0;
  EXPECT_THROW(bench_block(config), InputError);
  config.blocks = 2;
  config.batches = {1, 2};
  EXPECT_THROW(bench_block(config), InputError) << "--batch times one block";
}

TEST(BenchBlock, RejectsImpossibleShapes) {
  BenchBlockConfig config;
  config.hidden = 100;
  config.heads = 3;
  EXPECT_THROW(bench_block(config), InputError);
}

}  // namespace
}  // namespace bouquet::gpu

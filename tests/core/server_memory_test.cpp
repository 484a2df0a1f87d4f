#include <gtest/gtest.h>

#include "core/server_memory.h"

namespace bouquet::core {
namespace {

// 1000 bytes, none kept back: blocks of 90 bytes of weights and 10 tokens x 1 byte of cache.
ServerMemory memory(double bytes, double workspace = 0) { return ServerMemory{bytes, workspace, 90, 1}; }

TEST(ServerMemoryTest, AsManyBlocksAsFitClampedToTheModel) {
  EXPECT_EQ(blocks_that_fit(memory(1000), 10, 32), 10u);
  EXPECT_EQ(blocks_that_fit(memory(1000), 10, 4), 4u);  // more fit than the model has
  EXPECT_EQ(blocks_that_fit(memory(50), 10, 32), 1u);   // not even one: still serve one
}

TEST(ServerMemoryTest, TheWorkspaceShareIsKeptBack) {
  EXPECT_EQ(blocks_that_fit(memory(1000, 0.5), 10, 32), 5u);
  EXPECT_EQ(blocks_that_fit(memory(1000, 0.1), 10, 32), 9u);
}

TEST(ServerMemoryTest, TheCacheTakesWhatTheBlocksLeave) {
  EXPECT_EQ(cache_tokens_that_fit(memory(1000), 5), 110u);  // (1000 - 450) / 5 bytes per token
  EXPECT_EQ(cache_tokens_that_fit(memory(1000), 11), 0u);   // weights alone overflow
  // The cache a span was sized for is there: sizing and cache agree.
  const uint32_t blocks = blocks_that_fit(memory(1e6, 0.1), 100, 1000);
  EXPECT_GE(cache_tokens_that_fit(memory(1e6, 0.1), blocks), 100u);
}

}  // namespace
}  // namespace bouquet::core

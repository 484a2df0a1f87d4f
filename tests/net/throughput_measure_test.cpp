// Throughput measured on a real block and cached on disk, and the helpers `bouquet
// serve --num-blocks` uses to size and name itself.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gpu/span_compute.h"
#include "net/server/server_discovery.h"
#include "net/server/throughput_measure.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

class ThroughputCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fresh_dir("throughput-cache");
    ::setenv("BOUQUET_CACHE_DIR", dir_.c_str(), 1);
    model_ = testing::tiny_model("throughput", 2);
  }
  void TearDown() override { ::unsetenv("BOUQUET_CACHE_DIR"); }

  std::filesystem::path dir_;
  std::filesystem::path model_;
  std::vector<std::string> logs_;
  std::function<void(const std::string&)> log_ = [this](const std::string& line) { logs_.push_back(line); };
};

TEST_F(ThroughputCacheTest, MeasuresOnceThenReadsTheCacheForTheSameKeyOnly) {
  SpanCompute compute(SpanComputeConfig{model_, {0, 1}, "f32", "cpu", "none"});
  EXPECT_EQ(throughput_cache_file(), dir_ / "throughput.json");
  const ThroughputKey key{"abc", "cpu", "f32", "none", 1};
  const MeasuredSpeed first = cached_block_speed(key, compute, log_);
  EXPECT_GT(first.inference_rps, 0);
  EXPECT_GT(first.forward_rps, 0);
  EXPECT_NE(first.source.find("measured"), std::string::npos) << first.source;
  ASSERT_TRUE(std::filesystem::exists(dir_ / "throughput.json"));
  // A batched forward moves more tokens per second than one-token steps.
  EXPECT_GT(first.forward_rps, first.inference_rps);

  const MeasuredSpeed again = cached_block_speed(key, compute, log_);
  EXPECT_EQ(again.inference_rps, first.inference_rps);
  EXPECT_EQ(again.forward_rps, first.forward_rps);
  EXPECT_NE(again.source.find("cached in"), std::string::npos) << again.source;

  ThroughputKey other = key;
  other.quant = "int8";
  EXPECT_NE(cached_block_speed(other, compute, log_).source.find("measured"), std::string::npos);
  std::ifstream in(dir_ / "throughput.json");
  const auto json = nlohmann::json::parse(in);
  EXPECT_TRUE(json.contains(key.to_string()));
  EXPECT_TRUE(json.contains(other.to_string()));
  EXPECT_TRUE(logs_.empty());
  // The measurement leaves no cache behind on the block.
  EXPECT_EQ(compute.open_caches(), 0u);
}

TEST_F(ThroughputCacheTest, AMalformedCacheIsLoggedAndReplaced) {
  { std::ofstream(dir_ / "throughput.json") << "{ not json"; }
  SpanCompute compute(SpanComputeConfig{model_, {1, 2}, "f32", "cpu", "none"});
  const MeasuredSpeed speed = cached_block_speed(ThroughputKey{"abc", "cpu", "f32", "none", 1}, compute, log_);
  EXPECT_GT(speed.inference_rps, 0);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("malformed"), std::string::npos) << logs_[0];
  std::ifstream in(dir_ / "throughput.json");
  EXPECT_FALSE(nlohmann::json::parse(in, nullptr, false).is_discarded());
}

}  // namespace
}  // namespace bouquet::net

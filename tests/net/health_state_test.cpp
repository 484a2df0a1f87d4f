// `bouquet health`'s JSON: what a block's colour and a server's row are made of.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "net/health/health_state.h"

namespace bouquet::net::health {
namespace {

core::ServerRecord record(uint64_t peer, std::string address, uint32_t begin, uint32_t end,
                          core::ServerState state = core::ServerState::online) {
  core::ServerRecord r;
  r.peer = core::PeerId{peer};
  r.address = std::move(address);
  r.span = {begin, end};
  r.state = state;
  r.throughput_rps = 10;
  r.cache_tokens_free = 100;
  r.version = "bouquet 0.1";
  return r;
}

TEST(HealthState, BlocksShowHowManyOnlineServersHoldThemAndEachServerIsListedOnce) {
  SwarmModel m;
  m.model_id = "tiny";
  m.model_blocks = 3;
  const auto a = record(1, "10.0.0.1:1", 0, 2), b = record(2, "10.0.0.2:1", 1, 2),
             joining = record(3, "10.0.0.3:1", 2, 3, core::ServerState::joining);
  m.blocks = {{0, {a}}, {1, {a, b}}, {2, {joining}}};
  const auto state = nlohmann::json::parse(state_json({m}, {{"10.0.0.1:1", 0.002}}, 1234));
  EXPECT_EQ(state["updated_at"], 1234);
  const auto& model = state["models"][0];
  EXPECT_EQ(model["name"], "tiny");
  EXPECT_EQ(model["blocks"][0]["coverage"], "thin");
  EXPECT_EQ(model["blocks"][1]["coverage"], "good");
  EXPECT_EQ(model["blocks"][1]["throughput_rps"], 20.0);
  EXPECT_EQ(model["blocks"][2]["coverage"], "none");  // a joining server does not cover a block yet
  ASSERT_EQ(model["servers"].size(), 3u);
  EXPECT_EQ(model["servers"][0]["address"], "10.0.0.1:1");
  EXPECT_DOUBLE_EQ(model["servers"][0]["rtt_ms"].get<double>(), 2.0);
  EXPECT_TRUE(model["servers"][1]["rtt_ms"].is_null());  // not measured: unreachable
  EXPECT_EQ(model["servers"][2]["state"], "joining");
  EXPECT_EQ(model["servers"][0]["span"], nlohmann::json::array({0, 2}));
}

}  // namespace
}  // namespace bouquet::net::health

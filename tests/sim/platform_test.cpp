// The platform carries messages in exactly latency + size / bandwidth under CM02 without
// cross-traffic: up and down links differ, regions add their long-haul link, relays add theirs and
// are shared, and the TCP window caps long round trips. Each simulation runs in a child process.
#include "sim/platform.h"
#include "sim/isolated_run.h"
#include "sim/scenario.h"

#include <simgrid/s4u.hpp>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

namespace bouquet::sim {
namespace {
namespace sg4 = simgrid::s4u;

const char* kPlatform = R"(version: 1
name: links
seed: 1
duration_s: 100
network: {model: CM02, crosstraffic: false, tcp_window_bytes: 0, why: exact arithmetic in a test}
model: {name: bloom-7b1, weights: f16}
cost: {efficiency: {f16: 1}, block_overhead_s: 0, request_overhead_s: 0, client_efficiency: 1}
regions:
  - {name: eu, up_bps: 1e8, down_bps: 8e8, latency_s: 0.01}
  - {name: na, up_bps: 1e9, down_bps: 1e9, latency_s: 0.002}
long_haul:
  - {from: eu, to: na, bandwidth_bps: 1e10, latency_s: 0.04}
relays:
  - {name: r, region: eu, bandwidth_bps: 4e7, latency_s: 0.005}
servers:
  - {name: a, gpu: rtx-3090, region: eu, blocks: [0, 30]}
  - {name: b, gpu: rtx-3090, region: eu, blocks: [0, 30], relay: r}
  - {name: c, gpu: rtx-3090, region: eu, blocks: [0, 30], relay: r, up_bps: 1e9}
  - {name: d, gpu: rtx-3090, region: na, blocks: [0, 30]}
clients:
  - {name: x, device: cpu-8core, region: eu, work: {kind: forward}}
)";

// Sends `bytes` from each source to its destination at time 0 and returns each arrival time.
std::vector<double> transfer_times(const std::string& text,
                                   const std::vector<std::pair<std::string, std::string>>& pairs, double bytes) {
  std::string out = run_isolated([&] {
    ScenarioFile file = load_scenario_text(text, "links.yaml", {});
    sg4::Engine& engine = start_engine(file.base.network);
    Platform platform = build_platform(file.base);
    auto arrivals = std::make_shared<std::vector<double>>(pairs.size());
    for (size_t i = 0; i < pairs.size(); ++i) {
      std::string box = fmt::format("box-{}", i);
      sg4::Actor::create("send", platform.hosts.at(pairs[i].first),
                         [box, bytes] { sg4::Mailbox::by_name(box)->put(new int(1), static_cast<uint64_t>(bytes)); });
      sg4::Actor::create("recv", platform.hosts.at(pairs[i].second), [box, arrivals, i] {
        delete sg4::Mailbox::by_name(box)->get<int>();
        (*arrivals)[i] = sg4::Engine::get_clock();
      });
    }
    engine.run();
    std::string result;
    for (double t : *arrivals) result += fmt::format("{:.12f}\n", t);
    return result;
  });
  std::vector<double> times;
  std::istringstream in(out);
  for (double t; in >> t;) times.push_back(t);
  return times;
}

TEST(Platform, TransfersTakeLatencyPlusSizeOverTheNarrowestLink) {
  const double mb = 1e6;
  auto t = transfer_times(kPlatform, {{"x", "a"}}, mb);
  ASSERT_EQ(t.size(), 1u);
  // x's up link (100 Mbit/s) is the bottleneck; latency 0.01 up + 0.01 down.
  EXPECT_NEAR(t[0], 0.02 + mb * 8 / 1e8, 1e-9);
  // Down links are 8x faster than up links here: a -> x is limited by a's up link too.
  t = transfer_times(kPlatform, {{"a", "x"}}, mb);
  EXPECT_NEAR(t[0], 0.02 + mb * 8 / 1e8, 1e-9);
  // Across regions: eu up (100 Mbit/s), long haul (40 ms), na down.
  t = transfer_times(kPlatform, {{"a", "d"}}, mb);
  EXPECT_NEAR(t[0], 0.01 + 0.04 + 0.002 + mb * 8 / 1e8, 1e-9);
}

TEST(Platform, FirewalledHostsShareTheirRelay) {
  const double mb = 1e6;
  // c has a 1 Gbit/s up link of its own but sits behind a 40 Mbit/s relay.
  auto t = transfer_times(kPlatform, {{"c", "x"}}, mb);
  EXPECT_NEAR(t[0], 0.01 + 0.005 + 0.01 + mb * 8 / 4e7, 1e-9);
  // b and c send at once: the relay's 40 Mbit/s is split between them.
  t = transfer_times(kPlatform, {{"b", "x"}, {"c", "a"}}, mb);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_NEAR(t[0], 0.025 + 2 * mb * 8 / 4e7, 1e-6);
  EXPECT_NEAR(t[1], 0.025 + 2 * mb * 8 / 4e7, 1e-6);
}

TEST(Platform, TcpWindowCapsLongRoundTrips) {
  // A 64 KiB window over a 2 x 52 ms round trip allows 0.63 MB/s, far below the links.
  std::string text = kPlatform;
  text.replace(text.find("tcp_window_bytes: 0"), 19, "tcp_window_bytes: 65536");
  const double mb = 1e6;
  auto t = transfer_times(text, {{"d", "a"}}, mb);
  EXPECT_NEAR(t[0], 0.052 + mb / (65536 / (2 * 0.052)), 1e-6);
}

TEST(IsolatedRun, ReportsChildFailures) {
  EXPECT_EQ(run_isolated([] { return std::string("fine"); }), "fine");
  EXPECT_THROW(run_isolated([]() -> std::string { throw std::runtime_error("boom"); }), SimulationError);
  try {
    run_isolated([]() -> std::string { throw std::runtime_error("boom"); });
  } catch (const SimulationError& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  EXPECT_THROW(run_isolated([]() -> std::string { std::abort(); }), SimulationError);
}

}  // namespace
}  // namespace bouquet::sim
